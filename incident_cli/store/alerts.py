"""The alerts table: each alert an incident holds, with its state."""

from __future__ import annotations

import json

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
