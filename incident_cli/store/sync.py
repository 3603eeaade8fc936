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


def unresolved_with_ref(db: Database, channel: str) -> list[tuple[Incident, str]]:
    """The unresolved incidents for which `channel` kept a remote id, with it."""
    found = []
    for row in db.query(
        "SELECT i.*, r.remote_id AS ref FROM incidents i JOIN channel_refs r"
        " ON r.incident_id = i.id AND r.channel = ? WHERE i.status != 'resolved' ORDER BY i.id",
        [channel],
    ):
        ref = row.pop("ref")
        found.append((Incident.from_row(row), str(ref)))
    return found


def has_event(db: Database, incident_id: int, kind: str, message: str) -> bool:
    """Whether the timeline already says this."""
    return (
        db.conn.execute(
            "SELECT 1 FROM timeline WHERE incident_id = ? AND kind = ? AND message = ? LIMIT 1",
            (incident_id, kind, message),
        ).fetchone()
        is not None
    )
