"""The statements of `incident sync`: which incidents a channel was told of, its backoff."""

from __future__ import annotations

from incident_cli.models import Incident
from incident_cli.store.database import Database


def unresolved_sent_to(db: Database, channel: str) -> list[Incident]:
    """The unresolved incidents that at least one notification to `channel` reached."""
    return [
        Incident.from_row(row)
        for row in db.query(
            "SELECT * FROM incidents WHERE status != 'resolved' AND id IN"
            " (SELECT incident_id FROM notifications WHERE channel = ? AND status = 'sent')"
            " ORDER BY id",
            [channel],
        )
    ]


def not_before(db: Database, channel: str) -> float | None:
    """Until when the channel's API asked not to be called (its last 429), if it did."""
    row = db.conn.execute(
        "SELECT not_before FROM sync_status WHERE channel = ?", (channel,)
    ).fetchone()
    return row[0] if row else None


def record(db: Database, channel: str, not_before_at: float | None, error: str | None) -> None:
    """One sync of a channel: its backoff (None: none) and its error (None: it answered)."""
    db.conn.execute(
        "INSERT INTO sync_status (channel, not_before, last_error) VALUES (?, ?, ?)"
        " ON CONFLICT(channel) DO UPDATE SET not_before = excluded.not_before,"
        " last_error = excluded.last_error",
        (channel, not_before_at, error),
    )
