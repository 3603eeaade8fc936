"""`incident logs`: the timeline across incidents, its filters, and `-f` following another
process's writes (a real `logs -f` subprocess while `incident` ticks and acks)."""

from __future__ import annotations

import json
import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.support.binaries import cli_env, run_cli

CONFIG = "sources: {}\nanomaly: {window: 3, consecutive_failures: 3}\n"


def _setup(tmp_path: Path) -> None:
    (tmp_path / "incident.yaml").write_text(CONFIG)


def _open_anomaly(tmp_path: Path, journey: str) -> None:
    """Three failed results of a journey, then a detect-anomalies tick: one incident opens."""
    for _ in range(3):
        result = run_cli(
            ["journey", "record", journey, "--fail", "--latency-ms", "5"], cwd=tmp_path
        )
        assert result.code == 0, result.stderr
    result = run_cli(["detect-anomalies"], cwd=tmp_path)
    assert result.code == 0, result.stderr


def test_it_prints_every_incidents_events_oldest_first_one_line_each(tmp_path: Path) -> None:
    _setup(tmp_path)
    _open_anomaly(tmp_path, "login")
    _open_anomaly(tmp_path, "checkout")
    assert run_cli(["ack", "1", "--by", "alice"], cwd=tmp_path).code == 0

    result = run_cli(["logs"], cwd=tmp_path)

    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    assert "#1" in lines[0] and "opened" in lines[0] and "journey login" in lines[0]
    assert "#2" in lines[1] and "opened" in lines[1] and "journey checkout" in lines[1]
    assert "#1" in lines[2] and "acknowledged" in lines[2] and "alice:" in lines[2]


def test_it_filters_by_incident_kind_and_since(tmp_path: Path) -> None:
    _setup(tmp_path)
    _open_anomaly(tmp_path, "login")
    _open_anomaly(tmp_path, "checkout")
    assert run_cli(["ack", "2", "--by", "bob", "--note", "on it"], cwd=tmp_path).code == 0

    only_two = run_cli(["logs", "--incident", "2", "--json"], cwd=tmp_path)
    kinds = run_cli(["logs", "--kind", "acknowledged", "--kind", "note", "--json"], cwd=tmp_path)
    future = run_cli(["logs", "--since", "0s"], cwd=tmp_path)
    recent = run_cli(["logs", "--since", "1h", "--json"], cwd=tmp_path)

    assert [json.loads(x)["kind"] for x in only_two.stdout.splitlines()] == [
        "opened",
        "acknowledged",
        "note",
    ]
    assert {json.loads(x)["incident_id"] for x in only_two.stdout.splitlines()} == {2}
    assert [json.loads(x)["kind"] for x in kinds.stdout.splitlines()] == ["acknowledged", "note"]
    assert future.stdout == ""
    assert len(recent.stdout.splitlines()) == 4


def test_json_lines_carry_the_timeline_fields_and_the_incident_id(tmp_path: Path) -> None:
    _setup(tmp_path)
    _open_anomaly(tmp_path, "login")

    result = run_cli(["logs", "--json"], cwd=tmp_path)

    event = json.loads(result.stdout)
    assert set(event) == {"at", "incident_id", "kind", "actor", "message", "data"}
    assert event["incident_id"] == 1 and event["kind"] == "opened"
    assert event["at"].endswith("Z") and event["data"]["journeys"] == ["login"]


def test_control_characters_in_notes_never_reach_the_terminal(tmp_path: Path) -> None:
    _setup(tmp_path)
    _open_anomaly(tmp_path, "login")
    note = "line one\n\x1b[2J\x1b]0;owned\x07\x9b31m done"
    assert run_cli(["ack", "1", "--by", "eve\x1b[31m", "--note", note], cwd=tmp_path).code == 0

    human = run_cli(["logs"], cwd=tmp_path)
    as_json = run_cli(["logs", "--json"], cwd=tmp_path)

    assert len(human.stdout.splitlines()) == 3
    assert not any(ch in human.stdout.replace("\n", "") for ch in "\x1b\x07\x9b\r\t")
    assert "line one" in human.stdout and "done" in human.stdout
    notes = [json.loads(x) for x in as_json.stdout.splitlines()]
    assert notes[-1]["message"] == note  # JSON keeps the text, escaped
    assert "\x1b" not in as_json.stdout


def test_a_bad_since_is_a_usage_error(tmp_path: Path) -> None:
    _setup(tmp_path)
    result = run_cli(["logs", "--since", "yesterday"], cwd=tmp_path)
    assert result.code == 2
    assert result.stderr.startswith("incident: --since") and "Traceback" not in result.stderr


def _checkpoint_completes(db: Path) -> bool:
    conn = sqlite3.connect(db, timeout=0.5)
    try:
        for _ in range(5):  # a poll may be reading at that very moment
            if conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0:
                return True
            time.sleep(0.3)
        return False
    finally:
        conn.close()


def test_follow_prints_what_other_processes_write_and_ends_cleanly_on_ctrl_c(
    tmp_path: Path,
) -> None:
    _setup(tmp_path)
    _open_anomaly(tmp_path, "login")  # before: printed first
    follower = subprocess.Popen(
        [sys.executable, "-m", "incident_cli", "logs", "-f", "--json"],
        cwd=tmp_path,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert follower.stdout is not None
        for line in follower.stdout:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()

    def next_event(timeout: float = 15.0) -> dict[str, object]:
        return dict(json.loads(lines.get(timeout=timeout)))

    try:
        assert next_event()["kind"] == "opened"
        # A tick in another process opens an incident; an ack in a third one acknowledges it.
        _open_anomaly(tmp_path, "checkout")
        event = next_event()
        assert (event["incident_id"], event["kind"]) == (2, "opened")
        started = time.monotonic()
        assert run_cli(["ack", "2", "--by", "carol"], cwd=tmp_path).code == 0
        event = next_event()
        assert (event["incident_id"], event["kind"], event["actor"]) == (2, "acknowledged", "carol")
        assert time.monotonic() - started < 5  # polled about once a second
        resolved = run_cli(["--wait", "0", "resolve", "1", "--by", "dave"], cwd=tmp_path)
        assert resolved.code == 0, resolved.stderr
        assert next_event()["kind"] == "resolved"
        # While it waits it holds no read transaction: the WAL can be checkpointed to nothing.
        assert _checkpoint_completes(tmp_path / "incident.db")
    finally:
        follower.send_signal(signal.SIGINT)
        try:
            code = follower.wait(timeout=10)
        finally:
            if follower.poll() is None:
                os.kill(follower.pid, signal.SIGKILL)
    assert code == 0
    assert follower.stderr is not None
    assert follower.stderr.read() == ""
