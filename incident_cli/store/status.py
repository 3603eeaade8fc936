"""Heartbeats: each command's last run, for `status` and `metrics`."""

from __future__ import annotations

from typing import Any

from incident_cli.store.database import Database


def record_heartbeat(
    db: Database, command: str, started: float, finished: float, exit_code: int, error: str | None
) -> None:
    """Every command run leaves its last run (and last success) for `status` and `metrics`."""
    from incident_cli.store.database import write_tx

    with write_tx(db):
        db.conn.execute(
            """
            INSERT INTO heartbeats (command, last_run_at, last_ok_at, last_exit, last_duration,
                                    last_error)
            VALUES (?, ?, ?, ?, ?, ?)
            ON CONFLICT(command) DO UPDATE SET
                last_run_at = excluded.last_run_at,
                last_ok_at = COALESCE(excluded.last_ok_at, heartbeats.last_ok_at),
                last_exit = excluded.last_exit,
                last_duration = excluded.last_duration,
                last_error = excluded.last_error
            """,
            (
                command,
                finished,
                finished if exit_code == 0 else None,
                exit_code,
                finished - started,
                error[:1000] if error else None,
            ),
        )


def heartbeats(db: Database) -> list[dict[str, Any]]:
    """Each command's last run, by command name."""
    return list(db.query("SELECT * FROM heartbeats ORDER BY command"))


def source_statuses(db: Database) -> list[dict[str, Any]]:
    """Each source's last poll, failures in a row and last error."""
    return list(db.query("SELECT * FROM source_status ORDER BY name"))
