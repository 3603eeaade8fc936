"""Synthetic journey results and how far each journeys file has been read."""

from __future__ import annotations

from collections.abc import Iterable

from incident_cli.store.database import Database

INSERT_BATCH = 5000  # rows per INSERT: memory stays flat whatever the file holds
ResultRow = tuple[str, float, int, float | None, str]  # journey, at, ok, latency_ms, origin


def file_state(db: Database, path: str) -> tuple[int, int, int, str] | None:
    """(inode, size, offset, head) recorded for a journeys file, or None."""
    row = db.conn.execute(
        "SELECT inode, size, offset, head FROM journey_files WHERE path = ?", (path,)
    ).fetchone()
    if row is None:
        return None
    return row[0] or 0, row[1] or 0, row[2], row[3] or ""


def save_file_state(db: Database, path: str, inode: int, size: int, offset: int, head: str) -> None:
    db.conn.execute(
        "INSERT INTO journey_files (path, inode, size, offset, head) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT(path) DO UPDATE SET inode = excluded.inode, size = excluded.size,"
        " offset = excluded.offset, head = excluded.head",
        (path, inode, size, offset, head),
    )


def insert_results(db: Database, rows: Iterable[ResultRow]) -> int:
    """Insert the results not stored yet, in batches; returns how many were new."""
    before = db.conn.total_changes
    batch: list[ResultRow] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= INSERT_BATCH:
            _insert(db, batch)
            batch = []
    if batch:
        _insert(db, batch)
    return int(db.conn.total_changes - before)


def _insert(db: Database, batch: list[ResultRow]) -> None:
    db.conn.executemany(
        "INSERT OR IGNORE INTO journeys (journey, at, ok, latency_ms, origin)"
        " VALUES (?, ?, ?, ?, ?)",
        batch,
    )


def names(db: Database) -> list[str]:
    """Every journey with results, by walking the index one name at a time (not every row)."""
    rows = db.conn.execute(
        "WITH RECURSIVE names(name) AS ("
        " SELECT min(journey) FROM journeys"
        " UNION ALL"
        " SELECT (SELECT min(journey) FROM journeys WHERE journey > name) FROM names"
        " WHERE name IS NOT NULL)"
        " SELECT name FROM names WHERE name IS NOT NULL"
    ).fetchall()
    return [row[0] for row in rows]


def recent(db: Database, name: str, until: float, limit: int) -> list[tuple[float, int, float]]:
    """(at, ok, latency_ms) of a journey's newest `limit` results up to `until`, newest first."""
    rows: list[tuple[float, int, float]] = db.conn.execute(
        "SELECT at, ok, latency_ms FROM journeys WHERE journey = ? AND at <= ?"
        " ORDER BY at DESC, id DESC LIMIT ?",
        (name, until, limit),
    ).fetchall()
    return rows
