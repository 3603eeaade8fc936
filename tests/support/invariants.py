"""The fault runs' invariants, checked once the faults stopped and quiet ticks settled the state:
what the receivers got against the outbox, recovery attempts, claims, the DB's integrity and
every incident's timeline against its status (tests/faults and bench/faults.py)."""

from __future__ import annotations

import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.faults import Sinks

STATE_EVENTS = ("opened", "reopened", "acknowledged", "resolved")


@dataclass
class Verdict:
    violations: list[str] = field(default_factory=list)
    duplicates: int = 0  # messages a receiver accepted more often than the outbox marked sent
    resends: int = 0  # claims after the first of the rows that were sent: a duplicate's bound

    def fail(self, what: str) -> None:
        self.violations.append(what)


def _rows(conn: sqlite3.Connection, sql: str) -> list[Any]:
    return conn.execute(sql).fetchall()


def timeline_problems(status: str, reopen_count: int, kinds: list[str]) -> list[str]:
    """What is wrong between an incident's status, its reopen count and its timeline kinds (in
    order): it opened first; as many reopens as counted; resolved if and only if its last open
    or resolve event is a resolve; acknowledged only after an ack since it last (re)opened."""
    problems = []
    states = [k for k in kinds if k in STATE_EVENTS]
    if not states or states[0] != "opened" or states.count("opened") != 1:
        problems.append(f"does not start with one `opened` ({states[:3]})")
    if states.count("reopened") != reopen_count:
        problems.append(f"{states.count('reopened')} reopened events, reopen_count {reopen_count}")
    life = [k for k in states if k != "acknowledged"]
    last = life[-1] if life else None
    if (status == "resolved") != (last == "resolved"):
        problems.append(f"status {status} but its last open/resolve event is {last}")
    if states.count("resolved") > states.count("opened") + states.count("reopened"):
        problems.append("more resolves than opens and reopens")
    since_open = states[len(states) - states[::-1].index(last) :] if last in states else []
    if status == "acknowledged" and "acknowledged" not in since_open:
        problems.append("acknowledged with no ack event since it last opened")
    if status == "open" and "acknowledged" in since_open:
        problems.append("open, but acknowledged since it last opened")
    return problems


def check(
    workdir: Path,
    db: Path,
    sinks: Sinks | None,
    *,
    all_resolved: bool = True,
    max_attempts: int | None = None,
) -> Verdict:
    """Every invariant of a settled run. `all_resolved`: the schedule cleared every alert, so
    every incident must be resolved; `max_attempts`: the recovery budget no run may exceed."""
    verdict = Verdict()
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        _check_state(conn, verdict, all_resolved, max_attempts)
        if sinks is not None:
            _check_delivery(conn, verdict, sinks)
    finally:
        conn.close()
    log = workdir / "attempts.log"
    numbers = log.read_text().split() if log.exists() else []
    if len(numbers) != len(set(numbers)):
        verdict.fail(f"a recovery attempt ran twice: {numbers}")
    return verdict


def _check_state(
    conn: sqlite3.Connection, verdict: Verdict, all_resolved: bool, max_attempts: int | None
) -> None:
    [(integrity,)] = _rows(conn, "PRAGMA integrity_check")
    if integrity != "ok":
        verdict.fail(f"integrity_check: {integrity}")
        return
    [(running, leased_actions)] = _rows(
        conn,
        "SELECT count(*) FILTER (WHERE status = 'running'),"
        " count(*) FILTER (WHERE lease_until IS NOT NULL) FROM actions",
    )
    [(pending, leased, dead_silent)] = _rows(
        conn,
        "SELECT count(*) FILTER (WHERE status = 'pending'),"
        " count(*) FILTER (WHERE lease_until IS NOT NULL),"
        " count(*) FILTER (WHERE status = 'dead' AND coalesce(error, '') = '')"
        " FROM notifications",
    )
    for what, count in (
        ("actions left running", running),
        ("actions left leased", leased_actions),
        ("notifications neither delivered nor dead", pending),
        ("notifications left leased", leased),
        ("dead notifications with no reason", dead_silent),
    ):
        if count:
            verdict.fail(f"{count} {what}")
    incidents = _rows(
        conn,
        "SELECT id, status, reopen_count, opened_at, acknowledged_at, resolved_at FROM incidents",
    )
    for id_, status, reopens, opened, acked, resolved in incidents:
        sql = f"SELECT kind FROM timeline WHERE incident_id = {int(id_)} ORDER BY id"
        kinds = [kind for (kind,) in _rows(conn, sql)]
        for problem in timeline_problems(status, reopens, kinds):
            verdict.fail(f"incident {id_} timeline: {problem}")
        if all_resolved and status != "resolved":
            verdict.fail(f"incident {id_} is {status} though its alerts cleared")
        for name, at in (("acknowledged", acked), ("resolved", resolved)):
            if at is not None and at < opened:
                verdict.fail(f"incident {id_} {name} {opened - at:.0f}s before it opened")
    backwards = _rows(
        conn,
        "SELECT count(*) FROM actions WHERE finished_at < started_at OR started_at < planned_at",
    )[0][0]
    if backwards:
        verdict.fail(f"{backwards} actions with a negative duration")
    if max_attempts is not None:
        for key, used in _rows(
            conn,
            "SELECT budget_key, count(*) FROM actions WHERE kind = 'command'"
            " AND started_at IS NOT NULL GROUP BY budget_key",
        ):
            if used > max_attempts:
                verdict.fail(f"budget {key}: {used} attempts, max_attempts {max_attempts}")


def unmarked(db: Path, sinks: Sinks) -> int:
    """Messages the receivers accepted beyond the rows marked sent: those sent by a tick that
    died before marking them (and so sent again later) or answered after the sender gave up."""
    if not db.exists():
        return sum(sinks.accepted().values())
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        [(sent,)] = _rows(
            conn,
            "SELECT count(*) FROM notifications WHERE status = 'sent' AND incident_id IS NOT NULL",
        )
    except sqlite3.OperationalError:
        sent = 0  # no schema yet
    finally:
        conn.close()
    return sum(sinks.accepted().values()) - int(sent)


def _check_delivery(conn: sqlite3.Connection, verdict: Verdict, sinks: Sinks) -> None:
    """Each row marked sent arrived; a receiver got a row more than once only if the row was
    claimed again (its earlier send's mark never written, or its answer never read)."""
    sent: Counter[tuple[str, int]] = Counter()
    resends: Counter[tuple[str, int]] = Counter()
    for channel, incident, attempts in _rows(
        conn,
        "SELECT channel, incident_id, attempts FROM notifications"
        " WHERE status = 'sent' AND incident_id IS NOT NULL",
    ):
        sent[channel, incident] += 1
        resends[channel, incident] += attempts - 1
    if sinks.invalid:
        verdict.fail(f"PagerDuty events the schema refuses: {sinks.invalid[:2]}")
    got = sinks.accepted()
    for key in sorted(set(sent) | set(got)):
        if got[key] < sent[key]:
            verdict.fail(f"{key[0]} lost {sent[key] - got[key]} of incident {key[1]}'s messages")
        extra = max(got[key] - sent[key], 0)
        verdict.duplicates += extra
        verdict.resends += resends[key]
        if extra > resends[key]:
            verdict.fail(
                f"{key[0]} got incident {key[1]}'s messages {extra} more times than resent"
            )
