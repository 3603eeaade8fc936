"""`incident run`: the stages in order, each isolated from the others' failures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import responses

from incident_cli.store.connection import open_db
from tests.support.binaries import invoke, run_cli
from tests.support.builders import prom_body

PROM = "http://prom.test"
SLACK = "https://hooks.slack.test/services/T0/B0/secret-token"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "incident.yaml"
    path.write_text(
        f"""
sources:
  prometheus: {{type: prometheus, url: "{PROM}", timeout: 2s}}
channels:
  slack: {{type: slack, webhook_url: "{SLACK}", rate_limit: "off"}}
defaults: {{notify: [slack]}}
rules:
  - {{name: backend-down, match: {{alertname: BackendServiceDown}}, severity: critical}}
"""
    )
    return path


def heartbeats(tmp_path: Path) -> dict[str, int]:
    db = open_db(tmp_path / "incident.db")
    return {r["command"]: r["last_exit"] for r in db.query("SELECT * FROM heartbeats")}


@responses.activate
def test_a_tick_opens_incidents_and_delivers_their_notifications(
    config: Path, tmp_path: Path
) -> None:
    responses.get(f"{PROM}/api/v1/alerts", json=prom_body())
    responses.post(SLACK, body="ok")
    result = invoke("-c", str(config), "run", "--json")
    assert result.exit_code == 0, result.output
    stages = json.loads(result.stdout)["stages"]
    # Notifications already due go out before recover too: a page never waits behind a fix.
    assert [s["stage"] for s in stages] == [
        "poll",
        "detect-anomalies",
        "sync",
        "notify",
        "recover",
        "notify",
    ]
    assert len(stages[0]["result"]["opened"]) == 2
    assert stages[3]["result"]["sent"] == 2 and stages[5]["result"]["sent"] == 0
    assert len([c for c in responses.calls if c.request.url == SLACK]) == 2
    assert heartbeats(tmp_path) == {
        "poll": 0,
        "detect-anomalies": 0,
        "sync": 0,
        "recover": 0,
        "notify": 0,
        "run": 0,
    }


@responses.activate
def test_a_down_source_does_not_stop_notifications(config: Path, tmp_path: Path) -> None:
    responses.get(f"{PROM}/api/v1/alerts", json=prom_body())
    responses.post(SLACK, status=500)
    assert invoke("-c", str(config), "run").exit_code == 0  # slack failing: retried later
    responses.replace(responses.GET, f"{PROM}/api/v1/alerts", status=503)
    responses.replace(responses.POST, SLACK, body="ok")
    db = open_db(tmp_path / "incident.db")
    db.execute("UPDATE notifications SET next_attempt_at = 0")  # the retry is due now
    db.conn.commit()
    result = invoke("-c", str(config), "run")
    assert result.exit_code == 75
    assert result.stderr.startswith("incident: poll: source prometheus: HTTP 503")
    assert "secret-token" not in result.stderr
    sent = [
        r["status"]
        for r in open_db(tmp_path / "incident.db").query("SELECT status FROM notifications")
    ]
    assert sent == ["sent", "sent"]
    assert heartbeats(tmp_path)["poll"] == 75 and heartbeats(tmp_path)["notify"] == 0
    assert heartbeats(tmp_path)["run"] == 75


@responses.activate
def test_a_stage_that_crashes_is_isolated(
    config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import incident_cli.stages as run_module

    def broken(*args: Any) -> Any:
        raise RuntimeError("bug in a stage")

    monkeypatch.setitem(run_module._RUNNERS, "detect-anomalies", broken)
    responses.get(f"{PROM}/api/v1/alerts", json=prom_body())
    responses.post(SLACK, body="ok")
    result = invoke("-c", str(config), "run")
    assert result.exit_code == 1
    assert "detect-anomalies: internal error: RuntimeError: bug in a stage" in result.stderr
    assert len([c for c in responses.calls if c.request.url == SLACK]) == 2  # notify still ran
    assert heartbeats(tmp_path)["detect-anomalies"] == 1 and heartbeats(tmp_path)["notify"] == 0


@responses.activate
def test_dry_run_passes_through_every_stage(config: Path, tmp_path: Path) -> None:
    responses.get(f"{PROM}/api/v1/alerts", json=prom_body())
    result = invoke("-c", str(config), "run", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "poll: would have: opened 2" in result.stdout
    db = open_db(tmp_path / "incident.db")
    assert db.execute("SELECT count(*) FROM incidents").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM heartbeats").fetchone()[0] == 0
    assert not [c for c in responses.calls if c.request.method == "POST"]


def test_cron_runs_it_silently_and_an_unreachable_source_exits_75(tmp_path: Path) -> None:
    config = tmp_path / "incident.yaml"
    config.write_text(
        "sources:\n  prometheus: {type: prometheus, url: 'http://127.0.0.1:9', timeout: 2s}\n"
    )
    result = run_cli(["-c", str(config), "run"], cwd=tmp_path)
    assert result.code == 75
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "incident: poll: source prometheus: connection refused (nothing changed for source"
        " prometheus; not repeated until it answers again, see `incident status`)"
    ]


def test_a_dead_letter_is_not_hidden_behind_a_down_source() -> None:
    from incident_cli.errors import worst_exit

    assert worst_exit([75, 0, 1, 0]) == 1
    assert worst_exit([0, 75, 0]) == 75
    assert worst_exit([0, 0]) == 0
    assert worst_exit([]) == 0


@pytest.mark.parametrize(
    "command",
    [
        ["poll"],
        ["detect-anomalies"],
        ["recover"],
        ["notify"],
        ["run"],
        ["archive", "--older-than", "30"],
    ],
)
@responses.activate
def test_a_dry_run_leaves_no_heartbeat(config: Path, tmp_path: Path, command: list[str]) -> None:
    responses.get(f"{PROM}/api/v1/alerts", json=prom_body())
    result = invoke("-c", str(config), *command, "--dry-run")
    assert result.exit_code == 0, result.output
    assert heartbeats(tmp_path) == {}
