"""`incident journey record NAME --ok/--fail --latency-ms N [--at TIME]`, what probes call."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from incident_cli.cli import app
from incident_cli.cli.context import Env
from incident_cli.times import parse_rfc3339
from tests.support.builders import JOURNEYS_NOW

NOW = JOURNEYS_NOW + 0.25  # a clock with a fraction of a second


def record(tmp_path: Path, *args: str) -> Result:
    config = tmp_path / "incident.yaml"
    if not config.exists():
        config.write_text("anomaly: {window: 2, consecutive_failures: 2}\n")
    base = ["--config", str(config), "--db", str(tmp_path / "state.db"), "journey", "record"]
    return CliRunner().invoke(app, [*base, *args], obj=Env(clock=lambda: NOW))


def rows(tmp_path: Path) -> list[tuple[str, float, int, float | None, str]]:
    conn = sqlite3.connect(tmp_path / "state.db")
    try:
        return conn.execute(
            "SELECT journey, at, ok, latency_ms, origin FROM journeys ORDER BY id"
        ).fetchall()
    finally:
        conn.close()


def test_it_stores_one_result_and_prints_nothing(tmp_path: Path) -> None:
    result = record(tmp_path, "login", "--ok", "--latency-ms", "182")
    assert (result.exit_code, result.stdout, result.stderr) == (0, "", "")
    assert rows(tmp_path) == [("login", NOW, 1, 182.0, "cli")]


def test_it_takes_the_time_it_ran_and_a_failure(tmp_path: Path) -> None:
    at = "2026-11-28T20:00:00+01:00"
    result = record(tmp_path, "checkout", "--fail", "--latency-ms", "30000.5", "--at", at)
    assert result.exit_code == 0, result.output
    assert rows(tmp_path) == [("checkout", parse_rfc3339(at), 0, 30000.5, "cli")]


def test_a_retried_record_is_stored_once(tmp_path: Path) -> None:
    args = ("login", "--fail", "--latency-ms", "5", "--at", "2026-11-28T20:00:00Z")
    assert record(tmp_path, *args).exit_code == 0
    assert record(tmp_path, *args).exit_code == 0
    assert len(rows(tmp_path)) == 1


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["login", "--latency-ms", "5"], "exactly one of --ok and --fail"),
        (["login", "--ok", "--fail", "--latency-ms", "5"], "exactly one of --ok and --fail"),
        (["login", "--ok"], "--latency-ms"),
        (["login", "--ok", "--latency-ms", "-1"], "--latency-ms"),
        (["login", "--ok", "--latency-ms", "nan"], "--latency-ms"),
        (["login", "--ok", "--latency-ms", "inf"], "--latency-ms"),
        (["login", "--ok", "--latency-ms", "1e300"], "--latency-ms"),
        (["login", "--ok", "--latency-ms", "fast"], "--latency-ms"),
        (["login", "--ok", "--latency-ms", "5", "--at", "yesterday"], "--at"),
        (["login", "--ok", "--latency-ms", "5", "--at", "2026-11-30T21:00:01Z"], "--at"),
        (["login", "--ok", "--latency-ms", "5", "--at", "2026-11-28T21:05:01Z"], "future"),
        *[
            (["login", "--ok", "--latency-ms", "5", "--at", at], "--at: at is not an RFC 3339")
            for at in [
                "2026-11-28",
                "2026-11-28T20:00:00",
                "2026-11-28T20:00",
                "20261128T200000Z",
                "2026-11-28 20:00:00Z",
                "2026-11-28T20:00:00+0100",
                "now",
                "--help",
                "$(date)",
                "",
            ]
        ],
        (["", "--ok", "--latency-ms", "5"], "NAME"),
        (["x" * 201, "--ok", "--latency-ms", "5"], "NAME"),
        (["a\tb", "--ok", "--latency-ms", "5"], "NAME"),
        (["--ok", "--latency-ms", "5"], "NAME"),
        (["login", "--ok", "--latency-ms", "5", "--bogus"], "--bogus"),
    ],
)
def test_bad_usage_exits_2_and_stores_nothing(tmp_path: Path, args: list[str], says: str) -> None:
    result = record(tmp_path, *args)
    assert result.exit_code == 2, result.output
    assert says in result.stderr
    assert not (tmp_path / "state.db").exists() or rows(tmp_path) == []


@pytest.mark.parametrize("name", ["; rm -rf /", "$(id)", "--help", "登录 🚀", "x" * 200])
def test_any_printable_name_is_a_journey(tmp_path: Path, name: str) -> None:
    result = record(tmp_path, "--ok", "--latency-ms", "1", "--", name)
    assert result.exit_code == 0, result.output
    assert rows(tmp_path)[0][0] == name


def test_recorded_results_feed_detect_anomalies(tmp_path: Path) -> None:
    for second in range(2):
        at = f"2026-11-28T20:00:0{second}Z"
        assert record(tmp_path, "login", "--fail", "--latency-ms", "9", "--at", at).exit_code == 0
    config = tmp_path / "incident.yaml"
    result = CliRunner().invoke(
        app,
        ["--config", str(config), "--db", str(tmp_path / "state.db"), "detect-anomalies", "--json"],
        obj=Env(clock=lambda: NOW),
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["file"] is None
    assert len(out["opened"]) == 1
    assert out["journeys"][0]["failure_run"] == 2
