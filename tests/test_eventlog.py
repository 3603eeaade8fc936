"""The JSON event log (`log: {file, format: json}`): every committed timeline event and every
tick's summary, one JSON line each, secrets masked, safe under logrotate."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from incident_cli.reporting.eventlog import EventLog
from incident_cli.store.connection import open_db
from incident_cli.store.database import write_tx
from incident_cli.store.timeline import add_event
from tests.support.binaries import run_cli

SECRET_HOOK = "https://hooks.example.test/T000/B000/sEcReTtOkEn"
CONFIG = f"""
sources: {{}}
anomaly: {{window: 3, consecutive_failures: 3}}
channels:
  slack: {{type: slack, webhook_url: "{SECRET_HOOK}"}}
log: {{file: logs/events.jsonl, format: json}}
"""


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _open_anomaly(tmp_path: Path, journey: str = "login") -> None:
    for _ in range(3):
        assert run_cli(["journey", "record", journey, "--fail", "--latency-ms", "5"], cwd=tmp_path)
    result = run_cli(["detect-anomalies"], cwd=tmp_path)
    assert result.code == 0, result.stderr


def test_every_event_and_each_tick_summary_is_one_json_line(tmp_path: Path) -> None:
    (tmp_path / "incident.yaml").write_text(CONFIG)
    _open_anomaly(tmp_path)
    assert run_cli(["ack", "1", "--by", "alice", "--note", "mine"], cwd=tmp_path).code == 0
    assert run_cli(["run"], cwd=tmp_path).code in (0, 1)

    lines = _lines(tmp_path / "logs" / "events.jsonl")
    events = [x for x in lines if x["type"] == "event"]
    ticks = [x for x in lines if x["type"] == "tick"]
    timeline = run_cli(["logs", "--json"], cwd=tmp_path).stdout.splitlines()
    assert [{k: v for k, v in e.items() if k not in ("type", "event_id")} for e in events] == [
        json.loads(x) for x in timeline
    ]
    assert [e["kind"] for e in events][:3] == ["opened", "acknowledged", "note"]
    assert [t["command"] for t in ticks] == ["detect-anomalies", "run"]
    assert [s["stage"] for s in ticks[1]["stages"]] == [
        "poll",
        "detect-anomalies",
        "sync",
        "notify",
        "recover",
        "notify",
    ]
    assert all(isinstance(t["exit_code"], int) and t["duration_seconds"] >= 0 for t in ticks)


def test_secrets_are_masked_in_the_log(tmp_path: Path) -> None:
    (tmp_path / "incident.yaml").write_text(CONFIG)
    _open_anomaly(tmp_path)
    note = f'webhook is {SECRET_HOOK} "quoted"'
    assert run_cli(["ack", "1", "--note", note], cwd=tmp_path).code == 0

    path = tmp_path / "logs" / "events.jsonl"
    assert "sEcReTtOkEn" not in path.read_text()
    assert 'webhook is *** "quoted"' in [e.get("message") for e in _lines(path)]


def test_a_change_that_rolled_back_is_never_logged(tmp_path: Path) -> None:
    db = open_db(tmp_path / "state.db")
    db.conn.execute(
        "INSERT INTO incidents (key, title, status, severity, rule, handler, source, labels,"
        " annotations, opened_at, updated_at) VALUES ('k', 't', 'open', 'warning', 'r', 'default',"
        " 'prometheus', '{}', '{}', 1, 1)"
    )
    log = EventLog(str(tmp_path / "events.jsonl"), [])
    log.attach(db)

    with pytest.raises(RuntimeError), write_tx(db):
        add_event(db, 1, 10.0, "note", "rolled back")
        raise RuntimeError("the change failed")
    with write_tx(db):
        add_event(db, 1, 11.0, "note", "kept")

    assert [e["message"] for e in _lines(tmp_path / "events.jsonl")] == ["kept"]
    log.close()
    db.close()


def test_another_connections_events_are_logged_by_that_connection_only(tmp_path: Path) -> None:
    first, second = open_db(tmp_path / "state.db"), open_db(tmp_path / "state.db")
    first.conn.execute(
        "INSERT INTO incidents (key, title, status, severity, rule, handler, source, labels,"
        " annotations, opened_at, updated_at) VALUES ('k', 't', 'open', 'warning', 'r', 'default',"
        " 'prometheus', '{}', '{}', 1, 1)"
    )
    path = tmp_path / "events.jsonl"
    logs = [EventLog(str(path), []), EventLog(str(path), [])]
    logs[0].attach(first)
    logs[1].attach(second)

    with write_tx(first):
        add_event(first, 1, 10.0, "note", "from the first")
    with write_tx(second):
        add_event(second, 1, 11.0, "note", "from the second")
    with write_tx(first):
        add_event(first, 1, 12.0, "note", "first again")

    assert [e["message"] for e in _lines(path)] == [
        "from the first",
        "from the second",
        "first again",
    ]
    for log in logs:
        log.close()
    first.close()
    second.close()


def test_it_reopens_the_file_when_logrotate_moves_it_away(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = EventLog(str(path), [])
    log.write([{"type": "event", "message": "before"}])
    os.rename(path, tmp_path / "events.jsonl.1")  # logrotate's default (create) mode
    log.write([{"type": "event", "message": "after"}])
    # copytruncate mode: same inode, truncated; O_APPEND writes at the new end.
    os.truncate(path, 0)
    log.write([{"type": "event", "message": "after truncate"}])
    log.close()

    assert [e["message"] for e in _lines(tmp_path / "events.jsonl.1")] == ["before"]
    assert [e["message"] for e in _lines(path)] == ["after truncate"]


def test_an_unwritable_log_costs_one_warning_not_the_change(tmp_path: Path) -> None:
    # A directory that is a file: not writable for root either.
    (tmp_path / "incident.yaml").write_text(CONFIG.replace("logs/events.jsonl", "blocked/e.jsonl"))
    (tmp_path / "blocked").write_text("")
    for _ in range(3):
        run_cli(["journey", "record", "x", "--fail", "--latency-ms", "1"], cwd=tmp_path)
    result = run_cli(["detect-anomalies"], cwd=tmp_path)
    assert result.code == 0
    assert result.stderr.count("cannot write the event log") == 1
    assert run_cli(["list", "--json"], cwd=tmp_path).json()[0]["id"] == 1


@pytest.mark.parametrize(
    ("log", "problem"),
    [
        ("{file: e.jsonl, format: text}", "log.format: unknown format 'text'"),
        ("{file: e.jsonl, rotate: daily}", "log.rotate: unknown key"),
        ("{format: json}", "log.file: is required"),
        ("e.jsonl", "log: expected a mapping"),
    ],
)
def test_a_bad_log_section_is_a_config_error(tmp_path: Path, log: str, problem: str) -> None:
    (tmp_path / "incident.yaml").write_text(f"sources: {{}}\nlog: {log}\n")
    result = run_cli(["logs"], cwd=tmp_path)
    assert result.code == 78
    assert problem in result.stderr


def test_the_smoke_test_checks_the_event_log_can_be_written(tmp_path: Path) -> None:
    (tmp_path / "incident.yaml").write_text(CONFIG)
    ok = run_cli(["test", "--offline", "--json"], cwd=tmp_path)
    (tmp_path / "incident.yaml").write_text(CONFIG.replace("logs/events.jsonl", "blocked/e.jsonl"))
    (tmp_path / "blocked").write_text("")  # a file where the directory should be
    broken = run_cli(["test", "--offline", "--json"], cwd=tmp_path)

    def log_checks(result: Any) -> list[str]:
        return [c["status"] for c in result.json()["checks"] if c["check"] == "log"]

    assert (ok.code, log_checks(ok)) == (0, ["ok"])
    assert (broken.code, log_checks(broken)) == (1, ["failed"])
