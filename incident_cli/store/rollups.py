"""The counters and hourly rollups that outlive archived incidents."""

from __future__ import annotations

from collections.abc import Sequence

from incident_cli.store.database import Database


def counters(db: Database) -> list[tuple[str, str, int]]:
    """(name, severity, value) of every counter (opened, reopened, resolved)."""
    return db.conn.execute("SELECT name, severity, value FROM counters").fetchall()


def recovery_totals(db: Database, results: Sequence[str]) -> tuple[int, ...]:
    """For each recovery result, the archived command actions that ended with it."""
    row: tuple[int, ...] = db.conn.execute(
        "SELECT "
        + ", ".join(f"COALESCE(sum(recovery_{r}), 0)" for r in results)
        + " FROM rollup_hourly"
    ).fetchone()
    return row
