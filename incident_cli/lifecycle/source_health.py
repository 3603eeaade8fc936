"""Source health: failed polls in a row, and the incident a source that stays unreachable opens."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from incident_cli.config.model import Config
from incident_cli.handlers.planning import plan_actions
from incident_cli.lifecycle.changes import open_incident, resolve
from incident_cli.lifecycle.routing import route
from incident_cli.models import Alert, Incident
from incident_cli.notify import outbox
from incident_cli.store import incidents as incidents_store
from incident_cli.store import status as status_store
from incident_cli.store.database import Database
from incident_cli.store.timeline import (
    add_event,
)

if TYPE_CHECKING:
    from incident_cli.lifecycle.result import PollResult

SOURCE_FAILURES_BEFORE_INCIDENT = 3


def update_source_status(
    db: Database,
    config: Config,
    fetched: Mapping[str, list[Alert]],
    failed: Mapping[str, str],
    now: float,
    result: PollResult,
) -> None:
    failing_before = set(status_store.failing_sources(db))
    for name, alerts in fetched.items():
        if name in failing_before:
            result.recovered_sources.append(name)
        status_store.source_answered(db, name, now, len(alerts))
        incident = open_unreachable_incident(db, name)
        if incident is not None and config.incidents.auto_resolve:
            resolve(db, config, incident, now, "auto", f"source {name} answers again")
            result.resolved.append(incident.id)
    for name, error in failed.items():
        failures = status_store.source_failed(db, name, now, error[:500])
        if name not in failing_before:
            result.new_failures.append(name)
        if failures >= SOURCE_FAILURES_BEFORE_INCIDENT and not open_unreachable_incident(db, name):
            open_source_unreachable(db, config, name, error, failures, now, result)


def unreachable_key(name: str) -> str:
    return f"source_unreachable:source={name}"


def open_unreachable_incident(db: Database, name: str) -> Incident | None:
    return incidents_store.unresolved_by_key(db, unreachable_key(name))


def open_source_unreachable(
    db: Database,
    config: Config,
    name: str,
    error: str,
    failures: int,
    now: float,
    result: PollResult,
) -> None:
    from incident_cli.config.model import DEFAULT_RULE

    labels = {"alertname": "IncidentSourceUnreachable", "source": name}
    # A rule may match it (to page, or to run a handler); otherwise it is critical and goes
    # where unmatched alerts go. The key stays fixed so it resolves when the source is back.
    routed = route(config, labels)
    if routed.rule is DEFAULT_RULE:
        routed = replace(routed, rule=replace(DEFAULT_RULE, name="source_unreachable"))
    routed = replace(
        routed,
        key=unreachable_key(name),
        severity=routed.rule.severity or "critical",
        title=f"IncidentSourceUnreachable: {name}",
    )
    alert = Alert(
        source=name,
        fingerprint="",
        labels=labels,
        annotations={"summary": f"source {name} failed {failures} polls in a row: {error}"},
        state="firing",
    )
    last_ok = status_store.last_ok_at(db, name)
    incident = open_incident(db, routed, alert, name, now, started_at=last_ok or None)
    add_event(
        db,
        incident.id,
        now,
        "source_unreachable",
        f"source {name} failed {failures} polls in a row: {error}"[:500],
        data={"source": name, "consecutive_failures": failures},
    )
    plan_actions(db, config, incident, alert, routed.rule, now)
    outbox.queue_firing(db, config, incident, now)
    result.opened.append(incident.id)
