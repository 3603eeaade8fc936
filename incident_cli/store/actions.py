"""The actions table: what handlers planned and recovery ran, one row per attempt."""

from __future__ import annotations

from typing import Any

from incident_cli.store.database import Database


def of_incident(db: Database, incident_id: int) -> list[dict[str, Any]]:
    return list(db.query("SELECT * FROM actions WHERE incident_id = ? ORDER BY id", [incident_id]))


def count_by_status(db: Database, statuses: tuple[str, ...]) -> dict[str, int]:
    marks = ", ".join("?" * len(statuses))
    return dict(
        db.conn.execute(
            f"SELECT status, count(*) FROM actions WHERE status IN ({marks}) GROUP BY status",
            statuses,
        ).fetchall()
    )


def command_results(db: Database) -> list[tuple[str, int]]:
    """(status, count) of command actions."""
    return db.conn.execute(
        "SELECT status, count(*) FROM actions WHERE kind = 'command' GROUP BY status"
    ).fetchall()
