"""The timeline: every incident's audit log, one row per event."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from incident_cli.store.database import Database

MAX_EVENT_MESSAGE = 4096
# json.dumps(data, ensure_ascii=False, default=str), with one encoder instead of one per event.
_encode_data = json.JSONEncoder(ensure_ascii=False, default=str).encode
EventRow = tuple[int, float, str, str, str, str | None]

INSERT_EVENT = (
    "INSERT INTO timeline (incident_id, at, kind, actor, message, data) VALUES (?,?,?,?,?,?)"
)


def event_row(
    incident_id: int,
    at: float,
    kind: str,
    message: str,
    *,
    actor: str = "incident",
    data: Mapping[str, Any] | None = None,
) -> EventRow:
    """The timeline row of one event, for INSERT_EVENT (add_event, or many at once)."""
    if len(message) > MAX_EVENT_MESSAGE:
        message = message[: MAX_EVENT_MESSAGE - 1] + "…"
    return (incident_id, at, kind, actor, message, None if data is None else _encode_data(data))


def add_event(
    db: Database,
    incident_id: int,
    at: float,
    kind: str,
    message: str,
    *,
    actor: str = "incident",
    data: Mapping[str, Any] | None = None,
) -> None:
    """Append one timeline event. Callers hold the write transaction of the change it records."""
    db.conn.execute(INSERT_EVENT, event_row(incident_id, at, kind, message, actor=actor, data=data))


def of_incident(db: Database, incident_id: int, *, by_time: bool = False) -> list[dict[str, Any]]:
    """An incident's events as rows, in the order they were written (or by time)."""
    order = "at, id" if by_time else "id"
    return list(
        db.query(f"SELECT * FROM timeline WHERE incident_id = ? ORDER BY {order}", [incident_id])
    )


def kinds_and_data(db: Database, incident_id: int) -> Iterator[tuple[str, str | None]]:
    """(kind, data JSON) of an incident's events, in order."""
    yield from db.conn.execute(
        "SELECT kind, data FROM timeline WHERE incident_id = ? ORDER BY id", (incident_id,)
    )
