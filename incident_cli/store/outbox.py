"""The outbox's rows (notifications): queueing, the reads delivery and storms need, counts."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from incident_cli.store.database import Database

# json.dumps(message, ensure_ascii=False, default=str), with one encoder instead of one per row.
_encode_message = json.JSONEncoder(ensure_ascii=False, default=str).encode
CHUNK = 500  # ids per IN (...) list


def enqueue(
    db: Database,
    channels: Iterable[str],
    incident_id: int | None,
    event: str,
    message: Any,
    now: float,
) -> int:
    """One pending row per channel; returns how many."""
    payload = _encode_message(message)
    rows = [(incident_id, ch, event, payload, now, now) for ch in channels]
    db.conn.executemany(
        "INSERT INTO notifications (incident_id, channel, event, status, attempts, message,"
        " created_at, next_attempt_at) VALUES (?, ?, ?, 'pending', 0, ?, ?, ?)",
        rows,
    )
    return len(rows)


def channels_with_firing(db: Database, incident_id: int) -> list[str]:
    """Channels with a firing (or escalation) message for this incident, sent or on its way."""
    rows = db.conn.execute(
        "SELECT DISTINCT channel FROM notifications WHERE incident_id = ?"
        " AND event IN ('firing', 'escalation') AND status != 'dead' ORDER BY channel",
        (incident_id,),
    ).fetchall()
    return [row[0] for row in rows]


def unsettled_storms(db: Database) -> Iterator[tuple[str, str]]:
    """(channel, message JSON) of every storm summary not yet followed by its `resolved`."""
    yield from db.conn.execute(
        "SELECT channel, message FROM notifications WHERE incident_id IS NULL"
        " AND event = 'storm' AND status != 'dead' AND json_extract(message, '$.storm_id')"
        " NOT IN (SELECT json_extract(message, '$.storm_id') FROM notifications"
        "  WHERE incident_id IS NULL AND event = 'resolved'"
        "  AND json_extract(message, '$.storm_id') IS NOT NULL)"
    )


def unsent_counts(db: Database, ids: list[int]) -> dict[int, dict[str, int]]:
    """incident id → {status: count} of its notifications not sent yet."""
    counts: dict[int, dict[str, int]] = {}
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        rows = db.conn.execute(
            "SELECT incident_id, status, count(*) FROM notifications WHERE status != 'sent'"
            f" AND incident_id IN ({','.join('?' * len(chunk))}) GROUP BY incident_id, status",
            chunk,
        )
        for incident_id, state, count in rows:
            counts.setdefault(incident_id, {})[state] = count
    return counts


def of_incident(db: Database, incident_id: int) -> list[dict[str, Any]]:
    return list(
        db.query("SELECT * FROM notifications WHERE incident_id = ? ORDER BY id", [incident_id])
    )


def status_counts(db: Database, statuses: tuple[str, ...]) -> dict[str, int]:
    marks = ", ".join("?" * len(statuses))
    return dict(
        db.conn.execute(
            f"SELECT status, count(*) FROM notifications WHERE status IN ({marks}) GROUP BY status",
            statuses,
        ).fetchall()
    )


def counts_by_channel(db: Database) -> list[tuple[str, str, int]]:
    """(channel, status, count) of every notification."""
    return db.conn.execute(
        "SELECT channel, status, count(*) FROM notifications GROUP BY channel, status"
        " ORDER BY channel, status"
    ).fetchall()


def backlog(db: Database) -> tuple[int, float | None]:
    """(pending rows, when the oldest was queued)."""
    depth, oldest = db.conn.execute(
        "SELECT count(*), min(created_at) FROM notifications WHERE status = 'pending'"
    ).fetchone()
    return depth, oldest
