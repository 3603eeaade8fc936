"""SIGKILL at each named step of a tick (the test-only INCIDENT_TEST_CRASH_AT hook), with a
real Alertmanager as the source, a webhook receiver and a recovery command that appends to a
file: the tick dies exactly there, and what it leaves is what the design promises."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.binaries import CliResult, run_cli
from tests.support.faults import db_rows, full_pipeline, pipeline, post_alert
from tests.support.invariants import check, unmarked
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


def attempts(tmp_path: Path) -> int:
    log = tmp_path / "attempts.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_killed_between_the_polls_read_and_its_write_loses_nothing(tmp_path: Path) -> None:
    with faulty(tmp_path) as (hook, db):
        killed = run(tmp_path, db, "poll-read")
        assert killed.code == -9
        assert db_rows(db, "SELECT count(*) FROM incidents") == [(0,)]
        again = run(tmp_path, db)
        assert again.code == 0, again.stderr
        assert db_rows(db, "SELECT status FROM incidents") == [("open",)]
        assert [r.body["event"] for r in hook.received] == ["firing"]
        assert db_rows(db, "SELECT status FROM notifications") == [("sent",)]


def test_killed_after_a_notification_claim_nothing_was_sent_and_the_row_is_leased(
    tmp_path: Path,
) -> None:
    with faulty(tmp_path) as (hook, db):
        assert run(tmp_path, db, "notify-claimed").code == -9
        assert hook.received == []
        [(status, lease, attempts_made)] = db_rows(
            db, "SELECT status, lease_until, attempts FROM notifications"
        )
        assert (status, attempts_made) == ("pending", 1)
        assert lease > time.time()  # the next tick after the lease sends it


def test_killed_after_a_send_before_its_mark_the_row_stays_pending(tmp_path: Path) -> None:
    with faulty(tmp_path) as (hook, db):
        assert run(tmp_path, db, "sent").code == -9
        assert [r.body["event"] for r in hook.received] == ["firing"]
        # Sent but not marked: the one place a duplicate can come from (resent after the lease).
        assert db_rows(db, "SELECT status FROM notifications") == [("pending",)]


def test_killed_after_an_action_claim_no_command_ran(tmp_path: Path) -> None:
    with faulty(tmp_path) as (_hook, db):
        assert run(tmp_path, db, "action-claimed").code == -9
        assert attempts(tmp_path) == 0
        assert db_rows(db, "SELECT status, attempts FROM actions") == [("running", 1)]


def test_killed_after_a_command_started_its_process_is_recorded(tmp_path: Path) -> None:
    with faulty(tmp_path) as (_hook, db):
        assert run(tmp_path, db, "command-started").code == -9
        time.sleep(0.5)
        assert attempts(tmp_path) == 1
        [(status, pid)] = db_rows(db, "SELECT status, pid FROM actions")
        # Running, with the process a later tick finds (and stops if it is still there).
        assert status == "running" and pid


@pytest.mark.parametrize(
    "step", ["poll-read", "notify-claimed", "sent", "action-claimed", "command-started"]
)
def test_after_a_kill_and_quiet_ticks_nothing_is_lost_and_nothing_ran_twice(
    tmp_path: Path, step: str
) -> None:
    """The webhook, PagerDuty (each event checked against the Events v2 schema) and SMTP
    all hear of the incident; the dead tick's leases (30 s a notification, 70 s an action) run
    out on the ticks' own clock (faketime), with nothing in the DB moved by hand."""
    db = tmp_path / "state.db"
    with full_pipeline(tmp_path, "backend", command_sleep=1) as (am, got, ticker):
        post_alert(am.url, "backend")
        assert ticker.run(crash_at=step).killed
        # Sends in flight when it died (the channels send in parallel): never marked sent.
        in_flight = unmarked(db, got)
        assert (in_flight >= 1) if step == "sent" else (in_flight == 0)
        for _ in range(2):
            ticker.wait(130)
            ticked = ticker.run()
            assert ticked.code in (0, 1), ticked.stderr
        post_alert(am.url, "backend", resolved=True)
        for _ in range(10):
            ticker.run()
            if db_rows(db, "SELECT status FROM incidents") == [("resolved",)] and not db_rows(
                db, "SELECT id FROM notifications WHERE status = 'pending'"
            ):
                break
            time.sleep(1)
        verdict = check(tmp_path, db, got)
        # Nothing lost, nothing run twice, nothing left claimed, every timeline consistent,
        # and a duplicate only where the kill fell between a send and its mark.
        assert verdict.violations == []
        assert verdict.duplicates == in_flight
        accepted = got.accepted()
        assert {channel for channel, _ in accepted} == {"hook", "pd", "mail"}
        assert sum(accepted.values()) == 6 + verdict.duplicates  # firing + resolved each
        # A claim whose tick died before its command started used up that attempt unrun.
        assert attempts(tmp_path) >= (0 if step == "action-claimed" else 1)
        checked = ticker.run("state", "check")
        assert checked.code == 0, checked.stdout
