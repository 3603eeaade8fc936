"""Heartbeats (each command's last run) and source status (each source's, and each replica's,
last poll)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from incident_cli.store.database import Database


def record_heartbeat(
    db: Database,
    command: str,
    started: float,
    finished: float,
    exit_code: int,
    error: str | None,
    host: str,
) -> None:
    """Every command run leaves its last run (and last success, and the host that ran it) for
    `status` and `metrics`, and each host's last run of it."""
    from incident_cli.store.database import write_tx

    with write_tx(db):
        db.conn.execute(
            """
            INSERT INTO heartbeats (command, last_run_at, last_ok_at, last_exit, last_duration,
                                    last_error, host, last_started_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT(command) DO UPDATE SET
                last_run_at = excluded.last_run_at,
                last_ok_at = COALESCE(excluded.last_ok_at, heartbeats.last_ok_at),
                last_exit = excluded.last_exit,
                last_duration = excluded.last_duration,
                last_error = excluded.last_error,
                host = excluded.host,
                last_started_at = excluded.last_started_at
            """,
            (
                command,
                finished,
                finished if exit_code == 0 else None,
                exit_code,
                finished - started,
                error[:1000] if error else None,
                host,
                started,
            ),
        )
        db.conn.execute(
            "INSERT INTO host_heartbeats (host, command, last_started_at, last_run_at, last_exit)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT(host, command) DO UPDATE SET"
            " last_started_at = excluded.last_started_at, last_run_at = excluded.last_run_at,"
            " last_exit = excluded.last_exit",
            (host, command, started, finished, exit_code),
        )


def heartbeats(db: Database) -> list[dict[str, Any]]:
    """Each command's last run, by command name."""
    return list(db.query("SELECT * FROM heartbeats ORDER BY command"))


def host_heartbeats(db: Database) -> list[dict[str, Any]]:
    """Each host's last run of each command, by host then command."""
    return list(db.query("SELECT * FROM host_heartbeats ORDER BY host, command"))


def source_statuses(db: Database) -> list[dict[str, Any]]:
    """Each source's last poll, failures in a row and last error."""
    return list(db.query("SELECT * FROM source_status ORDER BY name"))


def failing_sources(db: Database) -> list[str]:
    """Sources whose last poll failed."""
    return [
        name
        for name, failures in db.conn.execute(
            "SELECT name, consecutive_failures FROM source_status"
        )
        if failures
    ]


def source_answered(db: Database, name: str, now: float, alerts: int) -> None:
    db.conn.execute(
        "INSERT INTO source_status (name, last_checked_at, last_ok_at, consecutive_failures,"
        " last_error, alerts) VALUES (?, ?, ?, 0, NULL, ?)"
        " ON CONFLICT(name) DO UPDATE SET last_checked_at = excluded.last_checked_at,"
        " last_ok_at = excluded.last_ok_at, consecutive_failures = 0, last_error = NULL,"
        " alerts = excluded.alerts",
        (name, now, now, alerts),
    )


def source_failed(db: Database, name: str, now: float, error: str) -> int:
    """Count one more failed poll; returns the failures in a row."""
    db.conn.execute(
        "INSERT INTO source_status (name, last_checked_at, consecutive_failures, last_error)"
        " VALUES (?, ?, 1, ?) ON CONFLICT(name) DO UPDATE SET"
        " last_checked_at = excluded.last_checked_at,"
        " consecutive_failures = source_status.consecutive_failures + 1,"
        " last_error = excluded.last_error",
        (name, now, error),
    )
    return int(
        db.conn.execute(
            "SELECT consecutive_failures FROM source_status WHERE name = ?", (name,)
        ).fetchone()[0]
    )


def last_ok_at(db: Database, name: str) -> float | None:
    row = db.conn.execute("SELECT last_ok_at FROM source_status WHERE name = ?", (name,)).fetchone()
    return row[0] if row else None


def source_replicas(db: Database) -> list[dict[str, Any]]:
    """Each replica's last read, failures in a row and last error, by source then URL."""
    return list(db.query("SELECT * FROM source_replicas ORDER BY source, url"))


def record_replicas(
    db: Database, source: str, replicas: Mapping[str, str | None], now: float
) -> tuple[list[str], list[str]]:
    """Record one poll of a source's replicas (URL -> error, None when it answered), in the
    caller's write transaction; forget replicas no longer configured. Returns (the replicas
    whose failure is the first in a row, the replicas that answer again after failing)."""
    before = {
        url: failures
        for url, failures in db.conn.execute(
            "SELECT url, consecutive_failures FROM source_replicas WHERE source = ?", (source,)
        )
    }
    new_failures: list[str] = []
    recovered: list[str] = []
    for url, error in replicas.items():
        if error is None:
            if before.get(url):
                recovered.append(url)
            db.conn.execute(
                "INSERT INTO source_replicas (source, url, last_checked_at, last_ok_at,"
                " consecutive_failures, last_error) VALUES (?, ?, ?, ?, 0, NULL)"
                " ON CONFLICT(source, url) DO UPDATE SET"
                " last_checked_at = excluded.last_checked_at, last_ok_at = excluded.last_ok_at,"
                " consecutive_failures = 0, last_error = NULL",
                (source, url, now, now),
            )
        else:
            if not before.get(url):
                new_failures.append(url)
            db.conn.execute(
                "INSERT INTO source_replicas (source, url, last_checked_at,"
                " consecutive_failures, last_error) VALUES (?, ?, ?, 1, ?)"
                " ON CONFLICT(source, url) DO UPDATE SET"
                " last_checked_at = excluded.last_checked_at,"
                " consecutive_failures = source_replicas.consecutive_failures + 1,"
                " last_error = excluded.last_error",
                (source, url, now, error[:500]),
            )
    for url in set(before) - set(replicas):
        db.conn.execute("DELETE FROM source_replicas WHERE source = ? AND url = ?", (source, url))
    return new_failures, recovered
