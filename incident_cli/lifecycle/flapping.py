"""Flapping: an incident that reopens and resolves too often holds its notifications."""

from __future__ import annotations

from dataclasses import replace

from incident_cli.config.model import Config
from incident_cli.models import Incident
from incident_cli.notify import outbox
from incident_cli.store import incidents as incidents_store
from incident_cli.store.database import Database
from incident_cli.store.timeline import (
    add_event,
    flap_changes,
)


def recent_changes(db: Database, incident_id: int, since: float) -> int:
    return flap_changes(db, incident_id, since)


def start_if_flapping(db: Database, config: Config, incident: Incident, now: float) -> Incident:
    if incident.flapping:
        return incident
    changes = recent_changes(db, incident.id, now - config.incidents.flapping_window)
    if changes < config.incidents.flapping_changes:
        return incident
    incidents_store.set_flapping(db, incident.id, True, now)
    incident = replace(incident, flapping=True)
    add_event(
        db,
        incident.id,
        now,
        "flapping_started",
        f"{changes} reopen/resolve changes within {config.incidents.flapping_window:g}s:"
        " notifications held until it settles",
        data={"changes": changes, "window_seconds": config.incidents.flapping_window},
    )
    if incident.status != "resolved":
        # A flapping notice about a resolved incident would re-trigger it (PagerDuty, ...).
        outbox.queue_followup(
            db, config, incident, "firing", now, {"flapping": True, "note": "flapping started"}
        )
    return incident


def stop_if_settled(db: Database, config: Config, incident: Incident, now: float) -> None:
    if recent_changes(db, incident.id, now - config.incidents.flapping_window) > 0:
        return
    incidents_store.set_flapping(db, incident.id, False, now)
    incident = replace(incident, flapping=False)
    add_event(
        db,
        incident.id,
        now,
        "flapping_stopped",
        f"no reopen or resolve for {config.incidents.flapping_window:g}s",
    )
    # Bring every channel back to the incident's real state.
    if incident.status == "resolved":
        outbox.queue_followup(db, config, incident, "resolved", now)
    else:
        outbox.queue_firing(db, config, incident, now, {"note": "flapping stopped"})


def settle_flapping(db: Database, config: Config, now: float) -> None:
    for incident in incidents_store.flapping(db):
        stop_if_settled(db, config, incident, now)
