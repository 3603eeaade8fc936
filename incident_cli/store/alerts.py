"""The alerts table: each alert an incident holds, with its state."""

from __future__ import annotations

import json
from collections.abc import Sequence

from incident_cli.models import Alert
from incident_cli.store.database import Database


def alertnames(db: Database, incident_id: int) -> list[str | None]:
    """The alertname of each of an incident's alerts, in the order they joined it."""
    return [
        name
        for (name,) in db.conn.execute(
            "SELECT json_extract(labels, '$.alertname') FROM alerts WHERE incident_id = ?"
            " ORDER BY id",
            (incident_id,),
        )
    ]


def firing_keys(db: Database, incident_id: int) -> list[tuple[str, str]]:
    """(source, fingerprint) of an incident's firing alerts."""
    return db.conn.execute(
        "SELECT source, fingerprint FROM alerts WHERE incident_id = ? AND state = 'firing'",
        (incident_id,),
    ).fetchall()


def first_of(db: Database, incident_id: int) -> Alert | None:
    """The first alert that joined an incident."""
    row = db.conn.execute(
        "SELECT source, fingerprint, labels, annotations, state, starts_at, generator_url"
        " FROM alerts WHERE incident_id = ? ORDER BY id LIMIT 1",
        (incident_id,),
    ).fetchone()
    if row is None:
        return None
    return Alert(
        source=row[0],
        fingerprint=row[1],
        labels=json.loads(row[2]),
        annotations=json.loads(row[3]),
        state=row[4],
        starts_at=row[5],
        generator_url=row[6],
    )


def states(db: Database, incident_id: int) -> list[str]:
    return [
        r[0]
        for r in db.conn.execute("SELECT state FROM alerts WHERE incident_id = ?", (incident_id,))
    ]


# --------------------------------------------------------------------------- lifecycle


def uncleared(db: Database) -> list[tuple[int, int, str, str, str, str]]:
    """(alert id, incident id, incident status, source, fingerprint, state) of every alert not
    cleared, through the alerts_uncleared partial index."""
    return db.conn.execute(
        "SELECT a.id, a.incident_id, i.status, a.source, a.fingerprint, a.state"
        " FROM alerts a INDEXED BY alerts_uncleared"
        " JOIN incidents i ON i.id = a.incident_id WHERE a.state != 'cleared'"
    ).fetchall()


def cleared_of_unresolved(db: Database) -> list[tuple[int, int, str, str, str]]:
    """(alert id, incident id, source, fingerprint, state) of the cleared alerts of unresolved
    incidents (not in the partial index)."""
    return db.conn.execute(
        "SELECT a.id, a.incident_id, a.source, a.fingerprint, a.state FROM alerts a"
        " WHERE a.state = 'cleared'"
        " AND a.incident_id IN (SELECT id FROM incidents WHERE status != 'resolved')"
    ).fetchall()


def keys_of(db: Database, incident_id: int) -> list[tuple[int, str, str, str]]:
    """(alert id, source, fingerprint, state) of an incident's alerts."""
    return db.conn.execute(
        "SELECT id, source, fingerprint, state FROM alerts WHERE incident_id = ?", (incident_id,)
    ).fetchall()


def set_state(
    db: Database, incident_id: int, source: str, fingerprint: str, state: str, now: float
) -> None:
    db.conn.execute(
        "UPDATE alerts SET state = ?, last_seen_at = ?, cleared_at = NULL"
        " WHERE incident_id = ? AND source = ? AND fingerprint = ?",
        (state, now, incident_id, source, fingerprint),
    )


def clear(db: Database, incident_id: int, source: str, fingerprint: str, now: float) -> str | None:
    """Mark an alert cleared; returns its alertname."""
    row = db.conn.execute(
        "SELECT json_extract(labels, '$.alertname') FROM alerts"
        " WHERE incident_id = ? AND source = ? AND fingerprint = ?",
        (incident_id, source, fingerprint),
    ).fetchone()
    db.conn.execute(
        "UPDATE alerts SET state = 'cleared', cleared_at = ?"
        " WHERE incident_id = ? AND source = ? AND fingerprint = ?",
        (now, incident_id, source, fingerprint),
    )
    return row[0] if row else None


def touch_by_id(db: Database, ids: list[int], now: float) -> None:
    """Seen again in the same state: last_seen_at now, in one statement."""
    db.conn.execute(
        "UPDATE alerts SET last_seen_at = ? WHERE id IN (SELECT value FROM json_each(?))",
        (now, json.dumps(ids, separators=(",", ":"))),
    )


def touch_by_key(db: Database, rows: Sequence[tuple[float, int, str, str]]) -> None:
    """(now, incident id, source, fingerprint) of alerts seen again whose row id is not known."""
    db.conn.executemany(
        "UPDATE alerts SET last_seen_at = ? WHERE incident_id = ? AND source = ?"
        " AND fingerprint = ?",
        rows,
    )
