"""Fencing: a host that stalls past its lease must not settle what it claimed.

Real `incident` processes (INCIDENT_HOSTNAME a and b) against a real Alertmanager, a webhook
receiver and a recovery command. Host a is stalled at a named step (the test-only
INCIDENT_TEST_STOP_AT sends it SIGSTOP there); its leases are moved into the past (as the clock
would, without the wait) and its tick lock is lost (the lock file removed: the flock that
serialises ticks on SQLite is gone, as a PostgreSQL advisory lock is when its session ends), so
host b ticks meanwhile; then host a gets SIGCONT.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.binaries import CliResult, cli_env, run_cli, wait_until
from tests.support.faults import age_leases, pipeline
from tests.support.notify import Receiver

pytestmark = pytest.mark.integration


def rows(db: Path, sql: str, *args: Any) -> list[Any]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def argv(*command: str) -> list[str]:
    return ["-c", "incident.yaml", "--db", "state.db", *command]


def tick(workdir: Path, host: str, *command: str) -> CliResult:
    return run_cli(argv(*command), cwd=workdir, env={"INCIDENT_HOSTNAME": host})


@pytest.fixture
def stalled() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """stalled(workdir, host, step, *command): `incident COMMAND` on `host`, started and
    stopped (SIGSTOP) at `step`. Whatever is left of them is continued and reaped afterwards."""
    started: list[subprocess.Popen[str]] = []

    def start(workdir: Path, host: str, step: str, *command: str) -> subprocess.Popen[str]:
        env = cli_env({"INCIDENT_HOSTNAME": host, "INCIDENT_TEST_STOP_AT": step})
        proc = subprocess.Popen(
            [sys.executable, "-m", "incident_cli", *argv(*command)],
            cwd=workdir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(proc)
        wait_until(lambda: proc.poll() is not None or process_state(proc.pid) == "T")
        assert proc.poll() is None, proc.communicate()
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def resume(proc: subprocess.Popen[str]) -> str:
    """SIGCONT the stalled host and let it finish its tick; its stderr (it exits 0)."""
    proc.send_signal(signal.SIGCONT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    return stderr


def process_state(pid: int) -> str | None:
    """The one-letter state of a process (R, S, T, Z, ...), None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()[0]


def lose_lock(workdir: Path) -> None:
    """The stalled host's tick lock is gone, so another host can tick."""
    (workdir / "state.db.lock").unlink()


def notes(db: Path) -> list[dict[str, Any]]:
    return [
        {"message": message, **json.loads(data)}
        for message, data in rows(
            db, "SELECT message, data FROM timeline WHERE kind = 'note' ORDER BY id"
        )
        if "lease" in json.loads(data or "{}")
    ]


def firings(hook: Receiver) -> int:
    return sum(1 for r in hook.received if isinstance(r.body, dict) and r.body["event"] == "firing")


def test_a_host_stalled_between_send_and_mark_past_its_lease_does_not_mark_it_sent(
    tmp_path: Path, stalled: Callable[..., subprocess.Popen[str]]
) -> None:
    db = tmp_path / "state.db"
    with pipeline(tmp_path) as (hook, _am):
        assert tick(tmp_path, "a", "poll").code == 0
        a = stalled(tmp_path, "a", "sent", "notify")
        assert firings(hook) == 1
        age_leases(db)  # nobody else ticks meanwhile: its lease has just run out
        stderr = resume(a)
        assert "lease lost: host a's lease on the firing message to hook ran out" in stderr
        # Not marked: the row is the next lease holder's, and it sends it again.
        assert rows(db, "SELECT status, claimed_by, attempts FROM notifications") == [
            ("pending", "a", 1)
        ]
        [note] = notes(db)
        assert note["lease"] == "lost" and note["host"] == "a"
        assert "before it could be marked sent" in note["message"]
        assert tick(tmp_path, "b", "notify").code == 0
        assert rows(db, "SELECT status, claimed_by, attempts FROM notifications") == [
            ("sent", "b", 2)
        ]
        assert firings(hook) == 2  # the one duplicate: a stall between a send and its mark


def test_a_host_stalled_while_another_host_sent_and_marked_the_row_writes_nothing(
    tmp_path: Path, stalled: Callable[..., subprocess.Popen[str]]
) -> None:
    db = tmp_path / "state.db"
    with pipeline(tmp_path) as (hook, _am):
        assert tick(tmp_path, "a", "poll").code == 0
        a = stalled(tmp_path, "a", "sent", "notify")
        age_leases(db)
        lose_lock(tmp_path)
        b = tick(tmp_path, "b", "notify")
        assert b.code == 0, b.stderr
        before = rows(db, "SELECT * FROM notifications")
        [(events,)] = rows(db, "SELECT count(*) FROM timeline")
        stderr = resume(a)
        assert "lease lost: host a's lease on the firing message to hook" in stderr
        # b's mark stands untouched; a added only its note.
        assert rows(db, "SELECT * FROM notifications") == before
        assert rows(db, "SELECT status, claimed_by FROM notifications") == [("sent", "b")]
        assert rows(db, "SELECT count(*) FROM timeline") == [(events + 1,)]
        assert [n["host"] for n in notes(db)] == ["a"]
        assert rows(db, "SELECT count(*) FROM timeline WHERE kind = 'notified'") == [(1,)]
        assert firings(hook) == 2


def test_a_command_whose_host_stalled_past_its_lease_is_failed_as_lost_naming_the_host(
    tmp_path: Path, stalled: Callable[..., subprocess.Popen[str]]
) -> None:
    db = tmp_path / "state.db"
    with pipeline(tmp_path, command_sleep=6) as (_hook, _am):
        a = stalled(tmp_path, "a", "command-started", "run")
        assert (tmp_path / "attempts.log").read_text().split() == ["1"]
        [(pid, host)] = rows(db, "SELECT pid, claimed_by FROM actions WHERE status = 'running'")
        assert host == "a"
        age_leases(db)
        lose_lock(tmp_path)
        b = tick(tmp_path, "b", "run")
        assert b.code == 0, b.stderr
        # Another host's command cannot be stopped from here: b left it alone.
        assert process_state(pid) not in (None, "Z")
        assert "lost: host a was running it and its lease ran out" in b.stderr
        [(status, error)] = rows(db, "SELECT status, error FROM actions WHERE id = 1")
        assert status == "failed"
        assert error.startswith("lost: host a was running it and its lease ran out")
        assert "its outcome is unknown" in error
        # The attempt budget decides what comes next: a new attempt after the backoff.
        assert rows(db, "SELECT status, attempts FROM actions WHERE id = 2") == [("pending", 1)]
        stderr = resume(a)
        # a's command finished (exit 0), but a's lease was gone: its outcome is not recorded.
        assert "lease lost: host a's lease on command action 1 (attempt 1) ran out" in stderr
        assert rows(db, "SELECT status, error FROM actions WHERE id = 1") == [(status, error)]
        assert rows(db, "SELECT fixed_at FROM incidents") == [(None,)]
        [note] = notes(db)
        assert note["host"] == "a" and "exit 0" in note["message"]
        failed = [
            json.loads(data)
            for (data,) in rows(db, "SELECT data FROM timeline WHERE kind = 'action_failed'")
        ]
        assert failed == [{"action_id": 1, "lost": True, "host": "a"}]
        # Attempt 1 never ran again.
        assert (tmp_path / "attempts.log").read_text().split() == ["1"]
