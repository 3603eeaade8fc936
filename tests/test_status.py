"""`incident status`: health of the tool itself, and its exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.history import HOUR, NOW, History, cli

MIN = 60.0


def test_fresh_heartbeats_and_healthy_sources_exit_0(tmp_path: Path) -> None:
    h = History.at(tmp_path / "state.db")
    h.heartbeat("run", ran=NOW - MIN)
    h.source("prom", checked=NOW - MIN)
    result = cli(tmp_path, "status")
    assert result.exit_code == 0, result.output
    assert "OK" in result.stdout
    assert "run" in result.stdout


def test_a_heartbeat_older_than_max_age_exits_1(tmp_path: Path) -> None:
    h = History.at(tmp_path / "state.db")
    h.heartbeat("run", ran=NOW - 6 * MIN)
    h.source("prom", checked=NOW - 6 * MIN)
    result = cli(tmp_path, "status")
    assert result.exit_code == 1
    assert "run last ran 6m ago (more than 5m)" in result.stdout
    assert cli(tmp_path, "status", "--max-age", "10m").exit_code == 0


def test_a_command_that_runs_but_keeps_failing_is_stale(tmp_path: Path) -> None:
    h = History.at(tmp_path / "state.db")
    h.heartbeat("run", ran=NOW - MIN, ok=NOW - HOUR, exit_code=1)
    h.source("prom", checked=NOW - MIN)
    result = cli(tmp_path, "status")
    assert result.exit_code == 1
    assert "run runs but has not succeeded for 1h (last exit 1)" in result.stdout


def test_a_source_failing_three_ticks_in_a_row_exits_1(tmp_path: Path) -> None:
    h = History.at(tmp_path / "state.db")
    h.heartbeat("run", ran=NOW - MIN)
    h.source("prom", checked=NOW - MIN, failures=2, error="connection refused")
    assert cli(tmp_path, "status").exit_code == 0
    h.source("prom", checked=NOW - MIN, failures=3, error="connection refused")
    result = cli(tmp_path, "status")
    assert result.exit_code == 1
    assert "source prom failed 3 ticks in a row: connection refused" in result.stdout


def test_nothing_ever_ran_is_a_problem(tmp_path: Path) -> None:
    History.at(tmp_path / "state.db")
    result = cli(tmp_path, "status")
    assert result.exit_code == 1
    assert "no tick command has run yet" in result.stdout


def test_a_stage_run_by_hand_once_does_not_matter_when_run_is_fresh(tmp_path: Path) -> None:
    h = History.at(tmp_path / "state.db")
    h.heartbeat("run", ran=NOW - MIN)
    h.heartbeat("poll", ran=NOW - 3 * HOUR)
    h.heartbeat("archive", ran=NOW - 20 * HOUR)
    h.source("prom", checked=NOW - MIN)
    result = cli(tmp_path, "status", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    expected = {c["command"]: c["expected"] for c in data["commands"]}
    assert expected == {"run": True, "poll": False, "archive": False}


def test_stages_scheduled_separately_are_each_expected(tmp_path: Path) -> None:
    h = History.at(tmp_path / "state.db")
    h.heartbeat("poll", ran=NOW - MIN)
    h.heartbeat("notify", ran=NOW - HOUR)
    h.source("prom", checked=NOW - MIN)
    result = cli(tmp_path, "status")
    assert result.exit_code == 1
    assert "notify last ran 1h ago" in result.stdout


def test_expect_names_the_commands_that_must_be_fresh(tmp_path: Path) -> None:
    h = History.at(tmp_path / "state.db")
    h.heartbeat("run", ran=NOW - MIN)
    h.source("prom", checked=NOW - MIN)
    result = cli(tmp_path, "status", "--expect", "run", "--expect", "metrics")
    assert result.exit_code == 1
    assert "metrics has never run" in result.stdout


def test_json_has_commands_sources_queues_and_db_size(tmp_path: Path) -> None:
    h = History.at(tmp_path / "state.db")
    h.heartbeat("run", ran=NOW - MIN, took=2.5)
    h.source("prom", checked=NOW - MIN)
    h.source("gone", checked=NOW - 2 * HOUR, failures=9)  # no longer in the config
    i = h.incident(opened=NOW - HOUR, started=NOW - HOUR)
    h.incident(opened=NOW - HOUR, started=NOW - HOUR, acked=NOW - MIN, severity="warning")
    h.action(i, at=NOW, status="pending")
    h.notification(i, created=NOW - 10 * MIN, status="pending")
    h.notification(i, created=NOW - 10 * MIN, status="dead")
    result = cli(tmp_path, "status", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["ok"] is True
    assert data["problems"] == []
    assert data["commands"] == [
        {
            "command": "run",
            "last_run_at": "2027-01-15T07:59:00Z",
            "last_ok_at": "2027-01-15T07:59:00Z",
            "age_seconds": 60.0,
            "last_exit": 0,
            "last_duration_seconds": 2.5,
            "last_error": None,
            "expected": True,
            "stale": False,
            "host": None,  # a heartbeat written without a host (before hosts were recorded)
        }
    ]
    sources = {s["name"]: s for s in data["sources"]}
    assert sources["prom"]["reachable"] is True
    assert sources["gone"]["configured"] is False
    assert sources["gone"]["healthy"] is True  # nothing checks it any more: not judged
    assert data["incidents"] == {
        "open": 1,
        "acknowledged": 1,
        "by_severity": {"critical": 1, "warning": 1},
    }
    assert data["actions"] == {"pending": 1, "running": 0, "awaiting_approval": 0}
    assert data["breaker"]["open"] is False
    assert data["notifications"] == {
        "pending": 1,
        "dead": 1,
        "oldest_pending_age_seconds": 600.0,
    }
    assert data["db"]["size_bytes"] > 0
    assert data["db"]["path"] == str((tmp_path / "state.db").resolve())


def test_a_configured_source_never_checked_is_shown(tmp_path: Path) -> None:
    h = History.at(tmp_path / "state.db")
    h.heartbeat("run", ran=NOW - MIN)
    data = json.loads(cli(tmp_path, "status", "--json", sources=("prom", "am")).stdout)
    assert [(s["name"], s["reachable"]) for s in data["sources"]] == [
        ("am", None),
        ("prom", None),
    ]


def test_a_missing_db_is_reported_and_not_created(tmp_path: Path) -> None:
    result = cli(tmp_path, "status")
    assert result.exit_code == 1
    assert "does not exist" in result.stderr
    assert not (tmp_path / "state.db").exists()


def test_a_bad_max_age_is_usage(tmp_path: Path) -> None:
    History.at(tmp_path / "state.db")
    result = cli(tmp_path, "status", "--max-age", "soon")
    assert result.exit_code == 2
    assert "--max-age" in result.stderr


def test_stale_json_exits_1_with_plain_json(tmp_path: Path) -> None:
    h = History.at(tmp_path / "state.db")
    h.heartbeat("run", ran=NOW - HOUR)
    result = cli(tmp_path, "status", "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["ok"] is False
    assert data["commands"][0]["stale"] is True


def test_stages_run_separately_are_judged_when_they_ran_after_a_manual_run(
    tmp_path: Path,
) -> None:
    h = History.at(tmp_path / "state.db")
    h.heartbeat("run", ran=NOW - HOUR)  # `incident run` by hand once, an hour ago
    for stage in ("poll", "detect-anomalies", "recover", "notify"):
        h.heartbeat(stage, ran=NOW - MIN)  # cron runs the stages separately
    h.source("prom", checked=NOW - MIN)
    result = cli(tmp_path, "status", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    expected = {c["command"]: c["expected"] for c in data["commands"]}
    assert expected == {
        "run": False,
        "poll": True,
        "detect-anomalies": True,
        "recover": True,
        "notify": True,
    }
    h.heartbeat("notify", ran=NOW - 30 * MIN)  # then one separately scheduled stage stops
    result = cli(tmp_path, "status")
    assert result.exit_code == 1
    assert "notify last ran 30m ago" in result.stdout
    assert "run last ran" not in result.stdout


def test_a_manual_run_after_the_stages_is_judged_on_its_own(tmp_path: Path) -> None:
    h = History.at(tmp_path / "state.db")
    h.heartbeat("poll", ran=NOW - HOUR)
    h.heartbeat("run", ran=NOW - MIN)
    result = cli(tmp_path, "status", "--json")
    assert result.exit_code == 0, result.output
    expected = {c["command"]: c["expected"] for c in json.loads(result.stdout)["commands"]}
    assert expected == {"run": True, "poll": False}


def test_a_first_run_that_failed_just_now_is_not_stale_yet(tmp_path: Path) -> None:
    # A fresh install: the first `incident run` exits 75 (the source is not up yet).
    first = cli(tmp_path, "run", now=NOW)
    assert first.exit_code == 75, first.output
    result = cli(tmp_path, "status", now=NOW)
    assert result.exit_code == 0, result.output
    assert "not succeeded" not in result.stdout
    # still failing every tick, and the first run is now older than --max-age
    assert cli(tmp_path, "run", now=NOW + 4 * MIN).exit_code == 75
    assert cli(tmp_path, "status", now=NOW + 4 * MIN).exit_code == 0
    assert cli(tmp_path, "run", now=NOW + 6 * MIN).exit_code == 75
    result = cli(tmp_path, "status", now=NOW + 6 * MIN)
    assert result.exit_code == 1
    assert "run has never succeeded (first ran 6m ago, last exit 75)" in result.stdout
