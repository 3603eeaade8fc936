"""Incidents other detectors raise and clear (anomaly checks), and severity raised from outside."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from incident_cli.config.model import Config, severity_rank
from incident_cli.handlers.planning import plan_actions
from incident_cli.lifecycle.changes import open_incident, record_raise, reopen, resolve
from incident_cli.lifecycle.routing import route
from incident_cli.models import Alert, Incident
from incident_cli.notify import outbox
from incident_cli.store import incidents as incidents_store
from incident_cli.store.database import Database
from incident_cli.store.timeline import (
    add_event,
)


def raise_external(
    db: Database,
    config: Config,
    *,
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
    source: str,
    severity: str | None,
    now: float,
    started_at: float | None,
    message: str,
    data: Mapping[str, Any] | None = None,
) -> tuple[Incident, str]:
    """Open, reopen or update the incident for a problem found by a detector other than a
    source poll (e.g. `detect-anomalies`). Rules route it like any alert; `severity`, when
    given, wins over the rule's. The caller holds the write transaction.

    Returns the incident and what happened: "opened", "reopened" or "updated".
    """
    routed = route(config, labels)
    if severity:
        routed = replace(routed, severity=severity)
    alert = Alert(
        source=source,
        fingerprint="",
        labels=dict(labels),
        annotations=dict(annotations),
        state="firing",
        starts_at=started_at,
    )
    latest = incidents_store.latest_by_key(db, routed.key)
    if latest is not None and latest.status != "resolved":
        incidents_store.touch(db, latest.id, now)
        return replace(latest, last_seen_at=now), "updated"
    if (
        latest is not None
        and latest.resolved_at is not None
        and now - latest.resolved_at <= config.incidents.reopen_within
    ):
        incident = reopen(db, config, latest, alert, now)
        add_event(db, incident.id, now, "note", message, data=data)
        return incident, "reopened"
    incident = open_incident(db, routed, alert, source, now, started_at=started_at)
    add_event(db, incident.id, now, "opened", message, data=data)
    plan_actions(db, config, incident, alert, routed.rule, now)
    outbox.queue_firing(db, config, incident, now)
    return incident, "opened"


def clear_external(
    db: Database,
    config: Config,
    incident: Incident,
    now: float,
    message: str,
    data: Mapping[str, Any] | None = None,
) -> Incident:
    """Resolve an incident a detector opened, once its problem is gone (resolution auto, or
    recovered after a successful fix). The caller holds the write transaction."""
    if incident.status == "resolved" or not config.incidents.auto_resolve:
        return incident
    resolution = "recovered" if incident.fixed_at else "auto"
    resolved = resolve(db, config, incident, now, resolution, message, data=data)
    outbox.settle_storms(db, config, now)
    return resolved


def raise_severity(
    db: Database,
    config: Config,
    incident: Incident,
    severity: str,
    now: float,
    message: str,
    data: Mapping[str, Any] | None = None,
) -> Incident:
    """Raise an unresolved incident's severity (never lower it: an open incident's severity is
    the worst it has been), with a `severity_raised` event whose data has `from` and `to`.

    The channels that take the new severity but did not get the firing message get it now, in
    this transaction: that is how PagerDuty (`min_severity: critical`) pages once a grouped
    incident turns critical. Channels that already have it get nothing new. Nobody new is paged
    while the incident is acknowledged (a human has it) or flapping (notifications are held).
    The caller holds the write transaction."""
    if incident.status == "resolved" or severity_rank(severity) <= severity_rank(incident.severity):
        return incident
    incidents_store.set_severity(db, incident.id, severity, now)
    previous = incident.severity
    incident = replace(incident, severity=severity)
    record_raise(db, incident.id, previous, severity, now, message, data)
    if incident.status == "open" and not incident.flapping:
        got = set(outbox.channels_that_got_firing(db, incident.id))
        new = [c for c in outbox.routed_channels(config, incident) if c not in got]
        outbox.queue(
            db,
            new,
            incident.id,
            "firing",
            outbox.message_for(config, incident, "firing", {"severity_raised_from": previous}),
            now,
        )
    return incident


def raised_by(alert: Alert, severity: str) -> str:
    return f"severity raised to {severity}: {alert.name or 'alert'} on {alert.source} is {severity}"
