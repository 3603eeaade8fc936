"""SIGKILL at each named step of a tick (the test-only INCIDENT_TEST_CRASH_AT hook), with a
real Alertmanager as the source, a webhook receiver and a recovery command that appends to a
file: the tick dies exactly there, and what it leaves is what the design promises."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support.binaries import CliResult, run_cli
from tests.support.faults import age_leases, pipeline, post_alert
from tests.support.notify import Receiver

pytestmark = pytest.mark.integration


@contextmanager
def faulty(tmp_path: Path) -> Iterator[tuple[Receiver, Path]]:
    with pipeline(tmp_path) as (hook, am_url):
        faulty.am_url = am_url  # type: ignore[attr-defined]
        yield hook, tmp_path / "state.db"


def run(tmp_path: Path, db: Path, crash_at: str | None = None) -> CliResult:
    env = {"INCIDENT_TEST_CRASH_AT": crash_at} if crash_at else None
    return run_cli(
        ["-c", str(tmp_path / "incident.yaml"), "--db", str(db), "run"], cwd=tmp_path, env=env
    )


def rows(db: Path, sql: str) -> list[Any]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def attempts(tmp_path: Path) -> int:
    log = tmp_path / "attempts.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_killed_between_the_polls_read_and_its_write_loses_nothing(tmp_path: Path) -> None:
    with faulty(tmp_path) as (hook, db):
        killed = run(tmp_path, db, "poll-read")
        assert killed.code == -9
        assert rows(db, "SELECT count(*) FROM incidents") == [(0,)]
        again = run(tmp_path, db)
        assert again.code == 0, again.stderr
        assert rows(db, "SELECT status FROM incidents") == [("open",)]
        assert [r.body["event"] for r in hook.received] == ["firing"]
        assert rows(db, "SELECT status FROM notifications") == [("sent",)]


def test_killed_after_a_notification_claim_nothing_was_sent_and_the_row_is_leased(
    tmp_path: Path,
) -> None:
    with faulty(tmp_path) as (hook, db):
        assert run(tmp_path, db, "notify-claimed").code == -9
        assert hook.received == []
        [(status, lease, attempts_made)] = rows(
            db, "SELECT status, lease_until, attempts FROM notifications"
        )
        assert (status, attempts_made) == ("pending", 1)
        assert lease > time.time()  # the next tick after the lease sends it


def test_killed_after_a_send_before_its_mark_the_row_stays_pending(tmp_path: Path) -> None:
    with faulty(tmp_path) as (hook, db):
        assert run(tmp_path, db, "sent").code == -9
        assert [r.body["event"] for r in hook.received] == ["firing"]
        # Sent but not marked: the one place a duplicate can come from (resent after the lease).
        assert rows(db, "SELECT status FROM notifications") == [("pending",)]


def test_killed_after_an_action_claim_no_command_ran(tmp_path: Path) -> None:
    with faulty(tmp_path) as (_hook, db):
        assert run(tmp_path, db, "action-claimed").code == -9
        assert attempts(tmp_path) == 0
        assert rows(db, "SELECT status, attempts FROM actions") == [("running", 1)]


def test_killed_after_a_command_started_its_process_is_recorded(tmp_path: Path) -> None:
    with faulty(tmp_path) as (_hook, db):
        assert run(tmp_path, db, "command-started").code == -9
        time.sleep(0.5)
        assert attempts(tmp_path) == 1
        [(status, pid)] = rows(db, "SELECT status, pid FROM actions")
        # Running, with the process a later tick finds (and stops if it is still there).
        assert status == "running" and pid


@pytest.mark.parametrize(
    "step", ["poll-read", "notify-claimed", "sent", "action-claimed", "command-started"]
)
def test_after_a_kill_and_quiet_ticks_nothing_is_lost_and_nothing_ran_twice(
    tmp_path: Path, step: str
) -> None:
    with faulty(tmp_path) as (hook, db):
        assert run(tmp_path, db, step).code == -9
        age_leases(db)  # the dead tick's leases run out
        for _ in range(2):
            ticked = run(tmp_path, db)
            assert ticked.code in (0, 1), ticked.stderr
        post_alert(faulty.am_url, "backend", resolved=True)  # type: ignore[attr-defined]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            run(tmp_path, db)
            if rows(db, "SELECT status FROM incidents") == [("resolved",)] and not rows(
                db, "SELECT id FROM notifications WHERE status = 'pending'"
            ):
                break
            time.sleep(1)
        events = [r.body["event"] for r in hook.received]
        # No notification lost; a duplicate only where the kill fell between send and mark.
        assert events.count("firing") == (2 if step == "sent" else 1), events
        assert events.count("resolved") == 1, events
        assert rows(db, "SELECT status FROM incidents") == [("resolved",)]
        # No recovery attempt ran twice.
        log = tmp_path / "attempts.log"
        numbers = log.read_text().split() if log.exists() else []
        assert len(numbers) == len(set(numbers)), numbers
        # A claim whose tick died before its command started used up that attempt unrun.
        assert len(numbers) >= (0 if step == "action-claimed" else 1), numbers
        # Nothing is left running or claimed, and the state passes its check.
        assert rows(db, "SELECT count(*) FROM actions WHERE status = 'running'") == [(0,)]
        assert rows(db, "SELECT count(*) FROM notifications WHERE lease_until IS NOT NULL") == [
            (0,)
        ]
        checked = run_cli(["--db", str(db), "state", "check"], cwd=tmp_path)
        assert checked.code == 0, checked.stdout
