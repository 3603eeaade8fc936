"""`incident status`: the health of the tool itself — heartbeats, sources, queues, DB size."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from incident_cli.store import status
from incident_cli.store.actions import count_by_status
from incident_cli.store.connection import db_size
from incident_cli.store.database import Database
from incident_cli.store.incidents import unresolved_counts
from incident_cli.store.outbox import backlog, status_counts
from incident_cli.store.safety import breaker_state
from incident_cli.times import format_duration, to_rfc3339

# The commands cron runs every tick: `run`, or the four stages scheduled separately. `run`
# leaves a heartbeat for each stage too, written before its own, so whichever of `run` and the
# newest stage heartbeat is more recent tells how cron runs the tick now: `run` (a stage run
# by hand once is then not a problem), or every stage that has ever run (a manual `run` once
# is then not a problem). Other commands (metrics --textfile, archive) keep their own
# schedules: they are shown, and judged only when named with --expect.
TICK_STAGES = ("poll", "detect-anomalies", "recover", "notify")
TICK_COMMANDS = ("run", *TICK_STAGES)
SOURCE_FAILURES_UNHEALTHY = 3


@dataclass(frozen=True)
class CommandHealth:
    command: str
    last_run_at: float | None
    last_ok_at: float | None
    last_exit: int | None
    last_duration: float | None
    last_error: str | None
    expected: bool
    problem: str | None
    host: str | None = None  # the host that ran it last (None: before hosts were recorded)


@dataclass(frozen=True)
class HostHealth:
    """One host's last tick (`run` or a tick stage), from its heartbeats."""

    host: str
    command: str
    last_started_at: float
    last_run_at: float
    last_exit: int | None


def _reachable(last_checked_at: float | None, consecutive_failures: int) -> bool | None:
    """Whether the last poll of a source (or replica) answered; None before the first."""
    if last_checked_at is None:
        return None
    return consecutive_failures == 0


@dataclass(frozen=True)
class ReplicaHealth:
    """One replica of a source with `urls:` (its URL with user:password@ masked)."""

    url: str
    last_checked_at: float | None
    last_ok_at: float | None
    consecutive_failures: int
    last_error: str | None

    @property
    def reachable(self) -> bool | None:
        return _reachable(self.last_checked_at, self.consecutive_failures)


@dataclass(frozen=True)
class SourceHealth:
    name: str
    configured: bool
    last_checked_at: float | None
    last_ok_at: float | None
    consecutive_failures: int
    last_error: str | None
    alerts: int | None
    problem: str | None
    # Its replicas, for a source with `urls:`: one down is shown, but it is not a problem.
    replicas: Sequence[ReplicaHealth] = ()

    @property
    def reachable(self) -> bool | None:
        return _reachable(self.last_checked_at, self.consecutive_failures)


@dataclass(frozen=True)
class Health:
    checked_at: float
    max_age: float
    commands: Sequence[CommandHealth]
    sources: Sequence[SourceHealth]
    incidents: Mapping[str, int]  # open / acknowledged
    open_by_severity: Mapping[str, int]
    pending_actions: int
    running_actions: int
    awaiting_approval: int
    breaker: Mapping[str, Any]  # the recovery breaker's row (opened_at None: closed)
    notifications_pending: int
    notifications_dead: int
    oldest_pending_notification_at: float | None
    db_path: str | None
    db_size_bytes: int
    db_backend: str  # sqlite | postgresql
    problems: Sequence[str]
    hosts: Sequence[HostHealth] = ()  # by host name
    this_host: str | None = None

    @property
    def last_tick_host(self) -> str | None:
        """The host that ticked last."""
        newest = max(self.hosts, key=lambda h: h.last_run_at, default=None)
        return None if newest is None else newest.host

    @property
    def ok(self) -> bool:
        return not self.problems


def expected_commands(
    last_runs: Mapping[str, float | None], expect: Sequence[str] | None
) -> set[str]:
    """Which heartbeats must be fresh (see TICK_COMMANDS); `last_runs` maps command to time."""
    if expect:
        return set(expect)
    stages = {c for c in TICK_STAGES if c in last_runs}
    if "run" not in last_runs:
        return stages
    newest_stage = max((last_runs[c] or 0.0 for c in stages), default=None)
    if newest_stage is not None and newest_stage > (last_runs["run"] or 0.0):
        return stages
    return {"run"}


def _replicas(db: Database) -> dict[str, list[ReplicaHealth]]:
    """The replicas of each source with `urls:`, by source."""
    out: dict[str, list[ReplicaHealth]] = {}
    for r in status.source_replicas(db):
        out.setdefault(r["source"], []).append(
            ReplicaHealth(
                url=r["url"],
                last_checked_at=r["last_checked_at"],
                last_ok_at=r["last_ok_at"],
                consecutive_failures=int(r["consecutive_failures"] or 0),
                last_error=r["last_error"],
            )
        )
    return out


def _hosts(db: Database) -> list[HostHealth]:
    """Each host's newest tick heartbeat (`run` or a tick stage)."""
    newest: dict[str, HostHealth] = {}
    for r in status.host_heartbeats(db):
        if r["command"] not in TICK_COMMANDS:
            continue
        seen = newest.get(r["host"])
        if seen is None or r["last_run_at"] > seen.last_run_at:
            newest[r["host"]] = HostHealth(
                r["host"], r["command"], r["last_started_at"], r["last_run_at"], r["last_exit"]
            )
    return [newest[name] for name in sorted(newest)]


def _where(db: Database, db_path: str | None) -> str | None:
    """The state DB as `status` names it: the SQLite file's full path, or the URL with its
    password masked."""
    if db.is_postgres:
        return db.where()
    return str(Path(db_path).resolve()) if db_path and db_path != ":memory:" else db_path


def check_health(
    db: Database,
    now: float,
    *,
    max_age: float = 300.0,
    configured_sources: Sequence[str] = (),
    expect: Sequence[str] | None = None,
    db_path: str | None = None,
    host: str | None = None,
) -> Health:
    """Read everything `status` shows and list the problems that make it exit 1."""
    problems: list[str] = []
    rows = {r["command"]: r for r in status.heartbeats(db)}
    expected = expected_commands({c: r["last_run_at"] for c, r in rows.items()}, expect)
    names = sorted(set(rows) | expected, key=lambda c: (c not in TICK_COMMANDS, c))
    commands = []
    for name in names:
        row: Mapping[str, Any] = rows.get(name, {})
        problem = None
        last_run, last_ok = row.get("last_run_at"), row.get("last_ok_at")
        if name in expected:
            if last_run is None:
                problem = f"{name} has never run"
            elif now - last_run > max_age:
                problem = (
                    f"{name} last ran {format_duration(now - last_run)} ago"
                    f" (more than {format_duration(max_age)})"
                )
            elif last_ok is None:
                # A first run that failed a moment ago (a fresh install whose source is not up
                # yet) gets --max-age to succeed, like any other run.
                first = row.get("first_run_at")
                if first is None or now - first > max_age:
                    since = (
                        "" if first is None else f"first ran {format_duration(now - first)} ago, "
                    )
                    problem = (
                        f"{name} has never succeeded ({since}last exit {row.get('last_exit')})"
                    )
            elif now - last_ok > max_age:
                problem = (
                    f"{name} runs but has not succeeded for {format_duration(now - last_ok)}"
                    f" (last exit {row.get('last_exit')})"
                )
        if problem:
            problems.append(problem)
        commands.append(
            CommandHealth(
                command=name,
                last_run_at=last_run,
                last_ok_at=last_ok,
                last_exit=row.get("last_exit"),
                last_duration=row.get("last_duration"),
                last_error=row.get("last_error"),
                expected=name in expected,
                problem=problem,
                host=row.get("host"),
            )
        )
    if not expected:
        problems.append("no tick command has run yet (is cron set up? see `incident cron print`)")

    sources = []
    source_rows = {r["name"]: r for r in status.source_statuses(db)}
    replica_rows = _replicas(db)
    for name in sorted(set(source_rows) | set(configured_sources)):
        srow: Mapping[str, Any] = source_rows.get(name, {})
        configured = name in configured_sources
        failures = int(srow.get("consecutive_failures") or 0)
        checked = srow.get("last_checked_at")
        # A source no longer in the config is judged only while something still checks it.
        judged = configured or (checked is not None and now - checked <= max_age)
        problem = None
        if judged and failures >= SOURCE_FAILURES_UNHEALTHY:
            problem = f"source {name} failed {failures} ticks in a row: {srow.get('last_error')}"
            problems.append(problem)
        sources.append(
            SourceHealth(
                name=name,
                configured=configured,
                last_checked_at=checked,
                last_ok_at=srow.get("last_ok_at"),
                consecutive_failures=failures,
                last_error=srow.get("last_error"),
                alerts=srow.get("alerts"),
                problem=problem,
                replicas=tuple(replica_rows.get(name, ())),
            )
        )

    incidents = {"open": 0, "acknowledged": 0}
    by_severity: dict[str, int] = {}
    for state, severity, count in unresolved_counts(db):
        incidents[state] = incidents.get(state, 0) + count
        by_severity[severity] = by_severity.get(severity, 0) + count
    actions, breaker = _recovery_health(db, problems)
    notes = status_counts(db, ("pending", "dead"))
    _, oldest = backlog(db)
    return Health(
        checked_at=now,
        max_age=max_age,
        commands=commands,
        sources=sources,
        incidents=incidents,
        open_by_severity=by_severity,
        pending_actions=int(actions.get("pending", 0)),
        running_actions=int(actions.get("running", 0)),
        awaiting_approval=int(actions.get("awaiting_approval", 0)),
        breaker=breaker,
        notifications_pending=int(notes.get("pending", 0)),
        notifications_dead=int(notes.get("dead", 0)),
        oldest_pending_notification_at=oldest,
        db_path=_where(db, db_path),
        db_size_bytes=db_size(db, db_path),
        db_backend=db.dialect,
        problems=problems,
        hosts=_hosts(db),
        this_host=host,
    )


def _recovery_health(db: Database, problems: list[str]) -> tuple[dict[str, int], dict[str, Any]]:
    """Actions by status and the recovery breaker's row; an open breaker is a problem."""
    actions = count_by_status(db, ("pending", "running", "awaiting_approval"))
    breaker = breaker_state(db)
    if breaker["opened_at"] is not None:
        problems.append(
            f"recovery breaker open since {to_rfc3339(breaker['opened_at'])}:"
            f" {breaker['reason']}; no command or block_ip action starts until"
            " `incident breaker reset --by NAME --note TEXT`"
        )
    return actions, breaker


def _age(now: float, at: float | None) -> float | None:
    return None if at is None else round(max(now - at, 0), 3)


def health_json(h: Health) -> dict[str, Any]:
    now = h.checked_at
    return {
        "ok": h.ok,
        "checked_at": to_rfc3339(now),
        "max_age_seconds": h.max_age,
        "problems": list(h.problems),
        "commands": [
            {
                "command": c.command,
                "last_run_at": to_rfc3339(c.last_run_at),
                "last_ok_at": to_rfc3339(c.last_ok_at),
                "age_seconds": _age(now, c.last_run_at),
                "last_exit": c.last_exit,
                "last_duration_seconds": c.last_duration,
                "last_error": c.last_error,
                "expected": c.expected,
                "stale": c.problem is not None,
                "host": c.host,
            }
            for c in h.commands
        ],
        "last_tick_host": h.last_tick_host,
        "hosts": [
            {
                "host": x.host,
                "this_host": x.host == h.this_host,
                "last_command": x.command,
                "last_started_at": to_rfc3339(x.last_started_at),
                "last_run_at": to_rfc3339(x.last_run_at),
                "age_seconds": _age(now, x.last_run_at),
                "last_exit": x.last_exit,
            }
            for x in h.hosts
        ],
        "sources": [
            {
                "name": s.name,
                "configured": s.configured,
                "reachable": s.reachable,
                "consecutive_failures": s.consecutive_failures,
                "last_checked_at": to_rfc3339(s.last_checked_at),
                "last_ok_at": to_rfc3339(s.last_ok_at),
                "last_error": s.last_error,
                "alerts": s.alerts,
                "healthy": s.problem is None,
                "replicas": [
                    {
                        "url": r.url,
                        "reachable": r.reachable,
                        "consecutive_failures": r.consecutive_failures,
                        "last_checked_at": to_rfc3339(r.last_checked_at),
                        "last_ok_at": to_rfc3339(r.last_ok_at),
                        "last_error": r.last_error,
                    }
                    for r in s.replicas
                ],
            }
            for s in h.sources
        ],
        "incidents": {**h.incidents, "by_severity": dict(h.open_by_severity)},
        "actions": {
            "pending": h.pending_actions,
            "running": h.running_actions,
            "awaiting_approval": h.awaiting_approval,
        },
        "breaker": {
            "open": h.breaker["opened_at"] is not None,
            "opened_at": to_rfc3339(h.breaker["opened_at"]),
            "reason": h.breaker["reason"] if h.breaker["opened_at"] is not None else None,
            "closed_at": to_rfc3339(h.breaker["closed_at"]),
            "closed_by": h.breaker["closed_by"],
            "close_note": h.breaker["close_note"],
        },
        "notifications": {
            "pending": h.notifications_pending,
            "dead": h.notifications_dead,
            "oldest_pending_age_seconds": _age(now, h.oldest_pending_notification_at),
        },
        "db": {"backend": h.db_backend, "path": h.db_path, "size_bytes": h.db_size_bytes},
    }
