"""What `incident replay` reads back from its scratch state once the history is fed through."""

from __future__ import annotations

from incident_cli.models import Incident
from incident_cli.store.database import Database


def all_incidents(db: Database) -> list[Incident]:
    """Every incident, in the order they opened."""
    return [Incident.from_row(row) for row in db.query("SELECT * FROM incidents ORDER BY id")]


def flapped(db: Database) -> set[int]:
    """Incidents that started flapping at some point."""
    return {
        row[0]
        for row in db.conn.execute(
            "SELECT DISTINCT incident_id FROM timeline WHERE kind = 'flapping_started'"
        )
    }


def notification_counts(db: Database) -> list[tuple[str, str, int]]:
    """(channel, event, count) of every queued notification."""
    return db.conn.execute(
        "SELECT channel, event, count(*) FROM notifications GROUP BY channel, event"
        " ORDER BY channel, event"
    ).fetchall()


def action_outcomes(db: Database) -> list[tuple[int, str, str, str, str | None]]:
    """(id, rule, kind, status, error) of every action, in the order they were planned."""
    return db.conn.execute(
        "SELECT a.id, i.rule, a.kind, a.status, a.error FROM actions a"
        " JOIN incidents i ON i.id = a.incident_id ORDER BY a.id"
    ).fetchall()


def escalations(db: Database) -> list[tuple[str, str, float, str | None]]:
    """(rule, incident key, at, reason) of every escalation."""
    return db.conn.execute(
        "SELECT i.rule, i.key, t.at, json_extract(t.data, '$.reason') FROM timeline t"
        " JOIN incidents i ON i.id = t.incident_id WHERE t.kind = 'escalated' ORDER BY t.id"
    ).fetchall()


def alerts_of_rule(db: Database, rule: str) -> list[tuple[str | None, int, int]]:
    """(alertname, distinct alerts, incidents) of the alerts whose incidents `rule` opened."""
    return db.conn.execute(
        "SELECT json_extract(a.labels, '$.alertname') AS name, count(DISTINCT a.fingerprint),"
        " count(DISTINCT a.incident_id) FROM alerts a JOIN incidents i ON i.id = a.incident_id"
        " WHERE i.rule = ? GROUP BY name ORDER BY name",
        (rule,),
    ).fetchall()
