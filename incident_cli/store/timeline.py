"""The timeline: every incident's audit log, one row per event."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
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


# --------------------------------------------------------------------------- across incidents

COLUMNS = "id, incident_id, at, kind, actor, message, data"
EventTuple = tuple[int, int, float, str, str, str, str | None]


def events_after(
    db: Database,
    after_id: int,
    *,
    since: float | None = None,
    incident_id: int | None = None,
    kinds: Sequence[str] = (),
    limit: int | None = None,
) -> list[EventTuple]:
    """Rows (COLUMNS) with an id above `after_id`, by time then id; one autocommit SELECT."""
    where, args = ["id > ?"], [after_id]  # type: list[str], list[Any]
    if since is not None:
        where.append("at >= ?")
        args.append(since)
    if incident_id is not None:
        where.append("incident_id = ?")
        args.append(incident_id)
    if kinds:
        where.append(f"kind IN ({','.join('?' * len(kinds))})")
        args.extend(kinds)
    sql = f"SELECT {COLUMNS} FROM timeline WHERE {' AND '.join(where)} ORDER BY at, id"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return db.conn.execute(sql, args).fetchall()


def newer_than(db: Database, after_id: int) -> list[EventTuple]:
    """Rows (COLUMNS) with an id above `after_id`, in id order."""
    return db.conn.execute(
        f"SELECT {COLUMNS} FROM timeline WHERE id > ? ORDER BY id", (after_id,)
    ).fetchall()


def newest_id(db: Database) -> int:
    row = db.conn.execute("SELECT max(id) FROM timeline").fetchone()
    return int(row[0] or 0)


def capture_inserts(db: Database) -> None:
    """Remember the id of every timeline row this connection inserts (a TEMP trigger: other
    processes' rows are not seen; a rollback forgets the ids with the rows). On PostgreSQL the
    connection keeps the ids its INSERTs return, the same way."""
    if db.is_postgres:
        if db.conn.capture is None:  # type: ignore[attr-defined]
            db.conn.capture = []  # type: ignore[attr-defined]
        return
    db.conn.executescript(
        """
        CREATE TEMP TABLE IF NOT EXISTS eventlog_pending (id INTEGER PRIMARY KEY);
        CREATE TEMP TRIGGER IF NOT EXISTS eventlog_capture AFTER INSERT ON main.timeline
        BEGIN
            INSERT OR IGNORE INTO eventlog_pending (id) VALUES (NEW.id);
        END;
        """
    )


def take_captured(db: Database) -> list[EventTuple] | None:
    """The committed rows captured since the last call (and forget them); None inside a
    transaction (only what is committed counts)."""
    conn = db.conn
    if conn.in_transaction:
        return None
    if db.is_postgres:
        ids, conn.capture = conn.capture or [], []  # type: ignore[attr-defined]
        if not ids:
            return []
        return conn.execute(
            f"SELECT {COLUMNS} FROM timeline WHERE id IN (SELECT value FROM json_each(?))"
            " ORDER BY id",
            (json.dumps(ids),),
        ).fetchall()
    rows: list[EventTuple] = conn.execute(
        f"SELECT {', '.join('t.' + c.strip() for c in COLUMNS.split(','))}"
        " FROM temp.eventlog_pending p JOIN main.timeline t ON t.id = p.id ORDER BY t.id"
    ).fetchall()
    conn.execute("DELETE FROM temp.eventlog_pending")
    return rows


def last_budget_escalation(
    db: Database, incident_id: int, budget_key: str, since: float
) -> float | None:
    """When the incident last escalated for this budget, at or after `since`."""
    row = db.conn.execute(
        "SELECT max(at) FROM timeline WHERE incident_id = ? AND kind = 'escalated'"
        " AND at >= ? AND json_extract(data, '$.budget_key') = ?",
        (incident_id, since, budget_key),
    ).fetchone()
    return None if row is None or row[0] is None else float(row[0])


def add_event_row(db: Database, event: EventRow) -> None:
    """Append one event built with event_row."""
    db.conn.execute(INSERT_EVENT, event)


def flap_changes(db: Database, incident_id: int, since: float) -> int:
    """Reopens and resolves of an incident since `since`."""
    row = db.conn.execute(
        "SELECT count(*) FROM timeline WHERE incident_id = ? AND kind IN ('reopened', 'resolved')"
        " AND at >= ?",
        (incident_id, since),
    ).fetchone()
    return int(row[0])
