"""The alerts table: each alert an incident holds, with its state."""

from __future__ import annotations

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
