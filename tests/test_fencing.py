"""Fencing: a host that stalls past its lease must not settle what it claimed.

Real `incident` processes (INCIDENT_HOSTNAME a and b) against a real Alertmanager, a webhook
receiver and a recovery command, on SQLite and on PostgreSQL. Host a is stalled at a named
step (the test-only INCIDENT_TEST_STOP_AT sends it SIGSTOP there); its leases are moved into
the past (as the clock would, without the wait) and its tick lock is lost (on SQLite the lock
file removed; on PostgreSQL its session ended, as the next host does once its tick lock lease
ran out), so host b ticks meanwhile; then host a gets SIGCONT.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.binaries import CliResult, cli_env, process_state, run_cli, wait_until
from tests.support.failover import age_leases_of, state_sql
from tests.support.faults import pipeline
from tests.support.notify import Receiver

pytestmark = pytest.mark.integration


def rows(db: str, sql: str, *args: Any) -> list[Any]:
    return [tuple(r) for r in state_sql(db, sql, args)]


def on_postgres(db: str) -> bool:
    return db.startswith("postgresql://")


def argv(db: str, *command: str) -> list[str]:
    return ["-c", "incident.yaml", "--db", db, *command]


def tick(workdir: Path, db: str, host: str, *command: str) -> CliResult:
    return run_cli(argv(db, *command), cwd=workdir, env={"INCIDENT_HOSTNAME": host})


@pytest.fixture
def stalled() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """stalled(workdir, db, host, step, *command): `incident COMMAND` on `host`, started and
    stopped (SIGSTOP) at `step`. Whatever is left of them is continued and reaped afterwards."""
    started: list[subprocess.Popen[str]] = []

    def start(workdir: Path, db: str, host: str, step: str, *command: str) -> subprocess.Popen[str]:
        env = cli_env({"INCIDENT_HOSTNAME": host, "INCIDENT_TEST_STOP_AT": step})
        proc = subprocess.Popen(
            [sys.executable, "-m", "incident_cli", *argv(db, *command)],
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


def resume(proc: subprocess.Popen[str], db: str) -> str:
    """SIGCONT the stalled host and let it finish its tick; its stderr. It exits 0; on
    PostgreSQL with its session ended (lose_lock), 75 with one line: it could write nothing."""
    proc.send_signal(signal.SIGCONT)
    _, stderr = proc.communicate(timeout=60)
    if on_postgres(db) and proc.returncode != 0:
        assert proc.returncode == 75, stderr
        assert "Traceback" not in stderr and "the state DB" in stderr, stderr
    else:
        assert proc.returncode == 0, stderr
    return stderr


def lose_lock(workdir: Path, db: str) -> None:
    """Host a's tick lock is gone, so another host can tick: on SQLite its lock file removed,
    on PostgreSQL its session ended (and its advisory lock with it)."""
    if on_postgres(db):
        ended = state_sql(
            db,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'incident@a'",
        )
        assert ended == [(True,)]
    else:
        (workdir / "state.db.lock").unlink()


def notes(db: str) -> list[dict[str, Any]]:
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
    tmp_path: Path, state_db: str, stalled: Callable[..., subprocess.Popen[str]]
) -> None:
    db = state_db
    with pipeline(tmp_path) as (hook, _am):
        assert tick(tmp_path, db, "a", "poll").code == 0
        a = stalled(tmp_path, db, "a", "sent", "notify")
        assert firings(hook) == 1
        age_leases_of(db, "a")  # nobody else ticks meanwhile: its lease has just run out
        stderr = resume(a, db)
        assert "lease lost: host a's lease on the firing message to hook ran out" in stderr
        # Not marked: the row is the next lease holder's, and it sends it again.
        assert rows(db, "SELECT status, claimed_by, attempts FROM notifications") == [
            ("pending", "a", 1)
        ]
        [note] = notes(db)
        assert note["lease"] == "lost" and note["host"] == "a"
        assert "before it could be marked sent" in note["message"]
        assert tick(tmp_path, db, "b", "notify").code == 0
        assert rows(db, "SELECT status, claimed_by, attempts FROM notifications") == [
            ("sent", "b", 2)
        ]
        assert firings(hook) == 2  # the one duplicate: a stall between a send and its mark


def test_a_host_stalled_while_another_host_sent_and_marked_the_row_writes_nothing(
    tmp_path: Path, state_db: str, stalled: Callable[..., subprocess.Popen[str]]
) -> None:
    db = state_db
    with pipeline(tmp_path) as (hook, _am):
        assert tick(tmp_path, db, "a", "poll").code == 0
        a = stalled(tmp_path, db, "a", "sent", "notify")
        age_leases_of(db, "a")
        lose_lock(tmp_path, db)
        b = tick(tmp_path, db, "b", "notify")
        assert b.code == 0, b.stderr
        before = rows(db, "SELECT * FROM notifications")
        [(events,)] = rows(db, "SELECT count(*) FROM timeline")
        stderr = resume(a, db)
        # b's mark stands untouched; a added only its note (on PostgreSQL, with its session
        # gone, not even that).
        noted = not on_postgres(db)
        assert ("lease lost: host a's lease on the firing message to hook" in stderr) is noted
        assert rows(db, "SELECT * FROM notifications") == before
        assert rows(db, "SELECT status, claimed_by FROM notifications") == [("sent", "b")]
        assert rows(db, "SELECT count(*) FROM timeline") == [(events + noted,)]
        assert [n["host"] for n in notes(db)] == ["a"] * noted
        assert rows(db, "SELECT count(*) FROM timeline WHERE kind = 'notified'") == [(1,)]
        assert firings(hook) == 2


def test_a_command_whose_host_stalled_past_its_lease_is_failed_as_lost_naming_the_host(
    tmp_path: Path, state_db: str, stalled: Callable[..., subprocess.Popen[str]]
) -> None:
    db = state_db
    with pipeline(tmp_path, command_sleep=6) as (_hook, _am):
        a = stalled(tmp_path, db, "a", "command-started", "run")
        assert (tmp_path / "attempts.log").read_text().split() == ["1"]
        [(pid, host)] = rows(db, "SELECT pid, claimed_by FROM actions WHERE status = 'running'")
        assert host == "a"
        age_leases_of(db, "a")
        lose_lock(tmp_path, db)
        b = tick(tmp_path, db, "b", "run")
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
        stderr = resume(a, db)
        # a's command finished (exit 0), but a's lease was gone: its outcome is not recorded,
        # only a note says so (on PostgreSQL, with its session gone, not even that).
        assert rows(db, "SELECT status, error FROM actions WHERE id = 1") == [(status, error)]
        assert rows(db, "SELECT fixed_at FROM incidents") == [(None,)]
        if not on_postgres(db):
            assert "lease lost: host a's lease on command action 1 (attempt 1) ran out" in stderr
            [note] = notes(db)
            assert note["host"] == "a" and "exit 0" in note["message"]
        else:
            assert notes(db) == []
        failed = [
            json.loads(data)
            for (data,) in rows(db, "SELECT data FROM timeline WHERE kind = 'action_failed'")
        ]
        assert failed == [{"action_id": 1, "lost": True, "host": "a"}]
        # Attempt 1 never ran again.
        assert (tmp_path / "attempts.log").read_text().split() == ["1"]
