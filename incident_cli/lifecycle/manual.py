"""What people do by hand: acknowledge an incident, resolve it."""

from __future__ import annotations

from dataclasses import replace

from incident_cli.config.model import Config
from incident_cli.errors import IncidentError, NotFound
from incident_cli.lifecycle.changes import resolve
from incident_cli.models import Incident
from incident_cli.notify import outbox
from incident_cli.store import actions as actions_store
from incident_cli.store import incidents as incidents_store
from incident_cli.store.database import Database, write_tx
from incident_cli.store.incidents import get_incident
from incident_cli.store.timeline import (
    add_event,
)


def acknowledge(
    db: Database, config: Config, incident_id: int, by: str, note: str | None, now: float
) -> Incident:
    with write_tx(db):
        incident = get_incident(db, incident_id)
        if incident is None:
            raise NotFound(f"no incident {incident_id}")
        if incident.status == "resolved":
            raise IncidentError(f"incident {incident_id} is resolved; nothing to acknowledge")
        if incident.status == "acknowledged":
            raise IncidentError(
                f"incident {incident_id} was already acknowledged by {incident.acknowledged_by}"
            )
        at = max(now, incident.opened_at)  # never before it opened (a clock stepped back)
        incidents_store.mark_acknowledged(db, incident_id, by, at)
        # Acknowledging stops escalation.
        actions_store.skip_pending(db, incident_id, "acknowledged", now, kind="escalate")
        incident = replace(incident, status="acknowledged", acknowledged_at=at, acknowledged_by=by)
        add_event(db, incident_id, at, "acknowledged", f"acknowledged by {by}", actor=by)
        if note:
            add_event(db, incident_id, now, "note", note, actor=by)
        outbox.queue_followup(db, config, incident, "acknowledged", now, {"by": by})
        return incident


def resolve_by_hand(
    db: Database,
    config: Config,
    incident_id: int,
    by: str,
    note: str | None,
    false_positive: bool,
    now: float,
) -> Incident:
    resolution = "false_positive" if false_positive else "manual"
    with write_tx(db):
        incident = get_incident(db, incident_id)
        if incident is None:
            raise NotFound(f"no incident {incident_id}")
        if incident.status == "resolved":
            if not false_positive or incident.resolution == "false_positive":
                raise IncidentError(f"incident {incident_id} is already resolved")
            # Marking a resolved incident as a false positive afterwards is a reporting fix.
            incidents_store.set_resolution(db, incident_id, "false_positive", now)
            add_event(db, incident_id, now, "note", f"marked false positive by {by}", actor=by)
            if note:
                add_event(db, incident_id, now, "note", note, actor=by)
            return replace(incident, resolution="false_positive")
        if note:
            add_event(db, incident_id, now, "note", note, actor=by)
        what = "a false positive" if false_positive else "resolved"
        resolved = resolve(
            db,
            config,
            incident,
            now,
            resolution,
            f"{what} by {by}" if false_positive else f"resolved by {by}",
            actor=by,
            data={"resolution": resolution},
        )
        outbox.settle_storms(db, config, now)
        return resolved


def note_once(db: Database, incident_id: int, text: str, actor: str, now: float) -> bool:
    """A timeline note, unless the incident's timeline already has it. True when written."""
    from incident_cli.store.sync import has_event

    with write_tx(db):
        if has_event(db, incident_id, "note", text):
            return False
        add_event(db, incident_id, now, "note", text, actor=actor)
        return True
