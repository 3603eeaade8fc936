"""The incident state changes every path shares: open, resolve, reopen, a raised severity."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from incident_cli.config.model import Config, severity_rank
from incident_cli.handlers.planning import plan_actions
from incident_cli.lifecycle.flapping import start_if_flapping
from incident_cli.lifecycle.routing import Routed
from incident_cli.models import Alert, Incident, clip_values
from incident_cli.notify import outbox
from incident_cli.store import actions as actions_store
from incident_cli.store import incidents as incidents_store
from incident_cli.store.batch import MAX_ROWID, IncidentBatch, dumps, insert_incident
from incident_cli.store.database import Database
from incident_cli.store.incidents import next_id
from incident_cli.store.timeline import (
    add_event,
)


def open_incident(
    db: Database,
    routed: Routed,
    alert: Alert,
    source: str,
    now: float,
    *,
    started_at: float | None,
    batch: IncidentBatch | None = None,
) -> Incident:
    # Its labels are those its alerts share (routed.labels); its annotations are those of the
    # alert that opened it.
    if batch is not None:
        labels, labels_json, annotations, annotations_json = batch.maps(alert)
        incident_id = batch.incident_id()
    else:
        labels, annotations = clip_values(alert.labels), clip_values(alert.annotations)
        labels_json, annotations_json = dumps(labels), dumps(annotations)
        free = next_id(db)
        incident_id = free if free < MAX_ROWID else None
    if routed.labels != alert.labels:  # a rule that groups: fewer labels than the alert's
        labels = clip_values(routed.labels)
        labels_json = dumps(labels)
    row = (
        incident_id,
        routed.key,
        routed.title,
        routed.severity,
        routed.rule.name,
        routed.rule.handler,
        source,
        labels_json,
        annotations_json,
        started_at,
        now,
        now,
        now,
    )
    if batch is not None and incident_id is not None:
        batch.incidents.append(row)
    else:
        if batch is not None:
            batch.flush()
        incident_id = insert_incident(db, row)
    return Incident(
        id=incident_id,
        key=routed.key,
        title=routed.title,
        status="open",
        severity=routed.severity,
        rule=routed.rule.name,
        handler=routed.rule.handler,
        source=source,
        labels=labels,
        annotations=annotations,
        started_at=started_at,
        opened_at=now,
        last_seen_at=now,
    )


def resolve(
    db: Database,
    config: Config,
    incident: Incident,
    now: float,
    resolution: str,
    message: str,
    *,
    actor: str = "incident",
    data: Mapping[str, Any] | None = None,
) -> Incident:
    # A clock stepped back never resolves an incident before it opened or was acknowledged
    # (no negative duration); what is queued and planned goes by the clock.
    at = max(now, incident.opened_at, incident.acknowledged_at or 0.0)
    incidents_store.mark_resolved(db, incident.id, at, resolution)
    actions_store.skip_pending(db, incident.id, "incident resolved", now)
    incident = replace(incident, status="resolved", resolved_at=at, resolution=resolution)
    add_event(db, incident.id, at, "resolved", message, actor=actor, data=data)
    if not incident.flapping:
        outbox.queue_followup(db, config, incident, "resolved", now)
    return start_if_flapping(db, config, incident, now)


def reopen(
    db: Database,
    config: Config,
    incident: Incident,
    alert: Alert,
    now: float,
    severity: str | None = None,
) -> Incident:
    """Reopen a resolved incident. `severity`, the one its alerts have now, raises it (the
    firing message then goes to the channels that take the higher one); it never lowers it."""
    previous = incident.severity
    if severity is None or severity_rank(severity) <= severity_rank(previous):
        severity = previous
    incidents_store.mark_reopened(db, incident.id, now, severity)
    incident = replace(
        incident,
        status="open",
        severity=severity,
        resolved_at=None,
        resolution=None,
        acknowledged_at=None,
        acknowledged_by=None,
        reopen_count=incident.reopen_count + 1,
        last_seen_at=now,
        absent_polls=0,
        fixed_at=None,
        escalated_at=None,
    )
    add_event(
        db,
        incident.id,
        now,
        "reopened",
        f"{alert.name or 'alert'} fired again within"
        f" {config.incidents.reopen_within:g}s of resolving (reopen #{incident.reopen_count})",
        data={"reopen_count": incident.reopen_count},
    )
    if severity != previous:
        record_raise(
            db,
            incident.id,
            previous,
            severity,
            now,
            f"severity raised to {severity}: the alerts firing again include a {severity} one",
        )
    incident = start_if_flapping(db, config, incident, now)
    if not incident.flapping:
        outbox.queue_firing(db, config, incident, now, {"reopened": True})
    plan_actions(db, config, incident, alert, config.rule_by_name(incident.rule), now)
    return incident


def record_raise(
    db: Database,
    incident_id: int,
    previous: str,
    severity: str,
    now: float,
    message: str,
    data: Mapping[str, Any] | None = None,
) -> None:
    add_event(
        db,
        incident_id,
        now,
        "severity_raised",
        message,
        data={"from": previous, "to": severity, **(data or {})},
    )


def escalate(
    db: Database,
    config: Config,
    incident: Incident,
    now: float,
    reason: str,
    budget_key: str | None = None,
) -> bool:
    """Escalate an open incident once: timeline `escalated`, `escalated_at`, and an escalation
    queued for `escalation.channels`. An acknowledged one is not escalated: a human has it.
    `budget_key` names the spent attempt budget that escalates it (the event records it, and
    `budget_escalated_at` finds it again). The caller holds the write transaction. True when
    it escalated now."""
    if incident.status != "open":
        if incident.status == "acknowledged":
            add_event(
                db,
                incident.id,
                now,
                "note",
                f"not escalating ({reason}): acknowledged by {incident.acknowledged_by}",
            )
        return False
    if not incidents_store.mark_escalated(db, incident.id, now):
        return False
    channels = [c.name for c in config.enabled_channels(config.escalation_channels)]
    outbox.queue_escalation(db, config, incident, now, reason)
    where = f"to {', '.join(channels)}" if channels else "(no escalation channel is configured)"
    add_event(
        db,
        incident.id,
        now,
        "escalated",
        f"escalated {where}: {reason}",
        data={"reason": reason, "channels": channels}
        | ({"budget_key": budget_key} if budget_key else {}),
    )
    return True


def mark_fixed(db: Database, incident_id: int, at: float) -> None:
    """A recovery action fixed it (its command succeeded and, if asked, was verified)."""
    incidents_store.mark_fixed(db, incident_id, at)


def mark_recovered(db: Database, incident_id: int, at: float) -> None:
    """The poll auto-resolved it before its fix could be verified: resolution `recovered`."""
    incidents_store.mark_recovered(db, incident_id, at)
