"""Hand-built incident histories for the report, metrics, status and archive tests.

Rows go straight into the tables (as lifecycle, recover and notify would leave them), with
times relative to a fixed NOW, so every number a test expects can be worked out by hand.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from incident_cli.cli.context import Env
from incident_cli.store.connection import open_db
from tests.support import backend
from tests.support.builders import T0, write_config

NOW = T0  # the reports' "now"
HOUR = 3600.0
DAY = 86400.0


class History:
    def __init__(self, db: Database) -> None:
        self.db = db

    @classmethod
    def at(cls, path: Path) -> History:
        return cls(open_db(backend.locate(path)))

    def incident(
        self,
        *,
        opened: float,
        started: float | None = None,
        acked: float | None = None,
        acked_by: str | None = None,
        resolved: float | None = None,
        resolution: str | None = None,
        severity: str = "critical",
        alertname: str = "BackendServiceDown",
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        title: str | None = None,
        status: str | None = None,
        reopen_count: int = 0,
        flapping: bool = False,
        escalated: float | None = None,
        fixed: float | None = None,
        rule: str = "backend-down",
        handler: str = "service_down",
        source: str = "prometheus",
    ) -> int:
        """Times are absolute epoch seconds (use NOW - ...)."""
        all_labels = {"alertname": alertname, **(labels or {})}
        if status is None:
            status = "resolved" if resolved is not None else ("acknowledged" if acked else "open")
        if resolved is not None and resolution is None:
            resolution = "auto"
        cursor = self.db.conn.execute(
            "INSERT INTO incidents (key, title, status, severity, rule, handler, source, labels,"
            " annotations, started_at, opened_at, acknowledged_at, acknowledged_by, resolved_at,"
            " resolution, flapping, reopen_count, fixed_at, escalated_at, updated_at)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                f"{rule}:" + ",".join(f"{k}={v}" for k, v in sorted(all_labels.items())),
                title or f"{alertname}: {all_labels.get('service', 'backend')}",
                status,
                severity,
                rule,
                handler,
                source,
                json.dumps(all_labels),
                json.dumps(annotations or {}),
                started,
                opened,
                acked,
                acked_by if acked is not None else None,
                resolved,
                resolution,
                int(flapping),
                reopen_count,
                fixed,
                escalated,
                opened,
            ),
        )
        return int(cursor.lastrowid or 0)

    def action(
        self,
        incident_id: int,
        *,
        at: float,
        kind: str = "command",
        status: str = "succeeded",
        exit_code: int | None = 0,
        command: Sequence[str] | None = ("systemctl", "restart", "backend.service"),
        attempts: int = 1,
        error: str | None = None,
        took: float = 2.0,
    ) -> int:
        ran = status in ("succeeded", "failed")
        cursor = self.db.conn.execute(
            "INSERT INTO actions (incident_id, kind, status, attempts, command, exit_code, error,"
            " planned_at, due_at, started_at, finished_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                incident_id,
                kind,
                status,
                attempts,
                json.dumps(list(command)) if command else None,
                exit_code if ran else None,
                error,
                at,
                at,
                at if ran or status == "running" else None,
                at + took if ran else None,
            ),
        )
        return int(cursor.lastrowid or 0)

    def notification(
        self,
        incident_id: int | None,
        *,
        created: float,
        channel: str = "slack",
        event: str = "firing",
        status: str = "sent",
        latency: float = 1.0,
        attempts: int = 1,
        error: str | None = None,
    ) -> int:
        cursor = self.db.conn.execute(
            "INSERT INTO notifications (incident_id, channel, event, status, attempts, message,"
            " created_at, next_attempt_at, sent_at, error) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                incident_id,
                channel,
                event,
                status,
                attempts,
                "{}",
                created,
                created,
                created + latency if status == "sent" else None,
                error,
            ),
        )
        return int(cursor.lastrowid or 0)

    def event(
        self,
        incident_id: int,
        at: float,
        kind: str,
        message: str,
        *,
        actor: str = "incident",
        data: Mapping[str, Any] | None = None,
    ) -> None:
        self.db.conn.execute(
            "INSERT INTO timeline (incident_id, at, kind, actor, message, data)"
            " VALUES (?,?,?,?,?,?)",
            (incident_id, at, kind, actor, message, json.dumps(data) if data else None),
        )

    def alert(
        self, incident_id: int, *, at: float, fingerprint: str = "fp1", state: str = "cleared"
    ) -> None:
        """An alert row; by default one that has cleared, as those of a history have."""
        self.db.conn.execute(
            "INSERT INTO alerts (incident_id, source, fingerprint, labels, annotations, state,"
            " starts_at, first_seen_at, last_seen_at, cleared_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                incident_id,
                "prometheus",
                fingerprint,
                "{}",
                "{}",
                state,
                at,
                at,
                at,
                at + 60 if state == "cleared" else None,
            ),
        )

    def heartbeat(
        self,
        command: str,
        *,
        ran: float,
        ok: float | None = None,
        exit_code: int = 0,
        took: float = 0.5,
    ) -> None:
        self.db.conn.execute("DELETE FROM heartbeats WHERE command = ?", (command,))
        self.db.conn.execute(
            "INSERT INTO heartbeats (command, last_run_at, last_ok_at, last_exit,"
            " last_duration) VALUES (?,?,?,?,?)",
            (command, ran, ok if ok is not None or exit_code else ran, exit_code, took),
        )

    def source(
        self, name: str, *, checked: float, failures: int = 0, error: str | None = None
    ) -> None:
        self.db.conn.execute("DELETE FROM source_status WHERE name = ?", (name,))
        self.db.conn.execute(
            "INSERT INTO source_status (name, last_checked_at, last_ok_at,"
            " consecutive_failures, last_error, alerts) VALUES (?,?,?,?,?,?)",
            (name, checked, None if failures else checked, failures, error, 0),
        )


def standard_history(h: History) -> None:
    """Five incidents in the last 24h and two outside it; every number worked out below."""
    a = h.incident(
        started=NOW - 10 * HOUR - 60,
        opened=NOW - 10 * HOUR,
        acked=NOW - 10 * HOUR + 300,
        acked_by="alice",
        resolved=NOW - 10 * HOUR + 1200,
        resolution="recovered",
        fixed=NOW - 10 * HOUR + 900,
        labels={"service": "backend"},
    )
    h.action(a, at=NOW - 10 * HOUR + 10, status="succeeded", exit_code=0)
    h.action(a, at=NOW - 10 * HOUR + 10, kind="diagnostics", command=("uptime",))
    h.notification(a, created=NOW - 10 * HOUR, channel="slack", latency=2)
    h.notification(a, created=NOW - 10 * HOUR, channel="pagerduty", latency=4)

    b = h.incident(
        started=NOW - 5 * HOUR - 30,
        opened=NOW - 5 * HOUR,
        resolved=NOW - 5 * HOUR + 570,
        severity="warning",
        alertname="LatencySLOBreach_p95",
        reopen_count=2,
        rule="latency",
        handler="performance_issue",
    )
    h.action(b, at=NOW - 5 * HOUR + 10, status="failed", exit_code=1)
    h.action(b, at=NOW - 5 * HOUR + 10, status="refused", error="label service unsafe")
    h.notification(b, created=NOW - 5 * HOUR, latency=1)
    h.event(b, NOW - 5 * HOUR + 400, "flapping_started", "4 changes within 3600s")
    h.event(b, NOW - 4 * HOUR, "flapping_stopped", "settled")

    c = h.incident(
        started=NOW - 2 * HOUR - 120,
        opened=NOW - 2 * HOUR,
        acked=NOW - 2 * HOUR + 600,
        acked_by="bob",
        escalated=NOW - 2 * HOUR + 900,
        labels={"service": "ephemeris"},
    )
    h.notification(c, created=NOW - 2 * HOUR, status="dead", error="HTTP 404")
    h.notification(c, created=NOW - 2 * HOUR, channel="pagerduty", status="pending")

    h.incident(  # no start time from the source: MTTR counts from opened_at, no MTTD
        opened=NOW - HOUR,
        resolved=NOW - HOUR + 60,
        resolution="false_positive",
        severity="info",
        alertname="CertificateExpiring",
        rule="certs",
        handler="default",
    )

    f = h.incident(  # began before the window, detected inside it: counted, MTTD 2h
        started=NOW - 25 * HOUR,
        opened=NOW - 23 * HOUR,
        severity="error",
        alertname="ServiceAvailabilityBreach",
        rule="slo",
        handler="slo_breach",
    )
    h.event(f, NOW - 22 * HOUR, "escalated", "recovery exhausted")  # escalated_at cleared later

    e = h.incident(  # opened before the window, resolved inside it: not counted
        started=NOW - 30 * HOUR,
        opened=NOW - 30 * HOUR,
        resolved=NOW - 20 * HOUR,
    )
    h.action(e, at=NOW - 30 * HOUR, status="succeeded")
    h.notification(e, created=NOW - 30 * HOUR)
    h.notification(None, created=NOW - 3 * HOUR, event="storm", latency=10)
    h.notification(None, created=NOW - 30 * HOUR, event="storm")


def sources_config(tmp_path: Path, sources: Sequence[str] = ("prom",)) -> Path:
    """A config whose sources point at a closed loopback port (nothing here polls them)."""
    lines = ["sources:"] + [
        f"  {name}: {{type: prometheus, url: 'http://127.0.0.1:9'}}" for name in sources
    ]
    if not sources:
        lines = ["sources: {}"]
    return write_config(tmp_path, "\n".join(lines) + "\n")


def env_at(now: float = NOW) -> Env:
    """What CliRunner passes as obj: the CLI with a frozen clock and no home directory."""
    return Env(clock=lambda: now, environ={"PATH": "/usr/bin:/bin"})


def cli(tmp_path: Path, *args: str, now: float = NOW, sources: Sequence[str] = ("prom",)) -> Any:
    """Invoke `incident --config … --db tmp_path/state.db ARGS` in-process at `now`."""
    from typer.testing import CliRunner

    from incident_cli.cli import app

    config = sources_config(tmp_path, sources)
    argv = ["--config", str(config), "--db", backend.locate(tmp_path / "state.db"), *args]
    return CliRunner().invoke(app, argv, obj=env_at(now))
