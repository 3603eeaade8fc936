"""The incident lifecycle: open, update, reopen, auto-resolve, acknowledge, resolve, flapping.

Every state change writes its timeline event, plans its handler's actions and queues its
notifications in the one write transaction of the change. This module is that one place.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from incident_cli.config.model import Config, Rule, severity_rank
from incident_cli.errors import IncidentError, NotFound
from incident_cli.handlers.planning import plan_actions
from incident_cli.lifecycle.routing import (
    Routed,
    alert_severity,
    group_severity,
    incident_key,
    match_rule,
    route,
    routed_by,
)
from incident_cli.models import Alert, Incident, clip_values
from incident_cli.notify import outbox
from incident_cli.store import actions as actions_store
from incident_cli.store import alerts as alerts_store
from incident_cli.store import incidents as incidents_store
from incident_cli.store import status as status_store
from incident_cli.store.batch import MAX_ROWID, IncidentBatch, dumps, insert_alert, insert_incident
from incident_cli.store.database import Database, write_tx
from incident_cli.store.incidents import get_incident, next_id
from incident_cli.store.timeline import (
    EventRow,
    add_event,
    add_event_row,
    event_row,
    flap_changes,
)

SOURCE_FAILURES_BEFORE_INCIDENT = 3


@dataclass
class PollResult:
    opened: list[int] = field(default_factory=list)
    reopened: list[int] = field(default_factory=list)
    resolved: list[int] = field(default_factory=list)
    updated: int = 0
    storm: bool = False
    failed_sources: dict[str, str] = field(default_factory=dict)
    alerts_seen: int = 0
    # Sources whose failure is the first in a row, and sources that answer again after
    # failing: what a tick prints about its sources (cron mails every line).
    new_failures: list[str] = field(default_factory=list)
    recovered_sources: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- primitive changes


def _insert_incident(
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


def _upsert_alerts(
    db: Database,
    incident_id: int,
    alerts: list[Alert],
    now: float,
    known: dict[tuple[str, str], str],
    batch: IncidentBatch | None = None,
) -> int:
    """Record the alerts seen now for an incident; timeline `alert_firing` for new/returning ones.

    `known` maps (source, fingerprint) to the stored state of this incident's alert rows. With
    a batch, new alert rows and the events go into it (an UPDATE writes the batch first).
    """
    events = 0
    for alert in alerts:
        previous = known.get((alert.source, alert.fingerprint))
        state = "suppressed" if alert.state == "suppressed" else "firing"
        if previous is None:
            if batch is not None:
                _, labels_json, _, annotations_json = batch.maps(alert)
            else:
                labels_json = dumps(clip_values(alert.labels))
                annotations_json = dumps(clip_values(alert.annotations))
            row = (
                incident_id,
                alert.source,
                alert.fingerprint,
                labels_json,
                annotations_json,
                state,
                alert.starts_at,
                now,
                now,
                (alert.generator_url or "")[:2048] or None,
            )
            if batch is not None:
                batch.alerts.append(row)
            else:
                insert_alert(db, row)
        else:
            if batch is not None:
                batch.flush()
            alerts_store.set_state(db, incident_id, alert.source, alert.fingerprint, state, now)
        event: EventRow | None = None
        if state == "firing" and previous in (None, "cleared"):
            event = event_row(
                incident_id,
                now,
                "alert_firing",
                f"{alert.name or 'alert'} firing on {alert.source}",
                data={"source": alert.source, "fingerprint": alert.fingerprint},
            )
            events += 1
        elif state != previous and previous is not None:
            event = event_row(
                incident_id,
                now,
                "note",
                f"{alert.name or 'alert'} on {alert.source} is now {state}",
                data={"source": alert.source, "fingerprint": alert.fingerprint},
            )
        if event is not None:
            if batch is not None:
                batch.events.append(event)
            else:
                add_event_row(db, event)
        known[(alert.source, alert.fingerprint)] = state
    return events


def _clear_alerts(db: Database, incident_id: int, gone: list[tuple[str, str]], now: float) -> None:
    for source, fp in gone:
        name = alerts_store.clear(db, incident_id, source, fp, now)
        add_event(
            db,
            incident_id,
            now,
            "alert_cleared",
            f"{name or 'alert'} no longer reported by {source}",
            data={"source": source, "fingerprint": fp},
        )


def _flap_changes(db: Database, incident_id: int, since: float) -> int:
    return flap_changes(db, incident_id, since)


def _maybe_start_flapping(db: Database, config: Config, incident: Incident, now: float) -> Incident:
    if incident.flapping:
        return incident
    changes = _flap_changes(db, incident.id, now - config.incidents.flapping_window)
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


def _stop_flapping_if_settled(db: Database, config: Config, incident: Incident, now: float) -> None:
    if _flap_changes(db, incident.id, now - config.incidents.flapping_window) > 0:
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


def _resolve(
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
    incidents_store.mark_resolved(db, incident.id, now, resolution)
    actions_store.skip_pending(db, incident.id, "incident resolved", now)
    incident = replace(incident, status="resolved", resolved_at=now, resolution=resolution)
    add_event(db, incident.id, now, "resolved", message, actor=actor, data=data)
    if not incident.flapping:
        outbox.queue_followup(db, config, incident, "resolved", now)
    return _maybe_start_flapping(db, config, incident, now)


def _reopen(
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
        _record_raise(
            db,
            incident.id,
            previous,
            severity,
            now,
            f"severity raised to {severity}: the alerts firing again include a {severity} one",
        )
    incident = _maybe_start_flapping(db, config, incident, now)
    if not incident.flapping:
        outbox.queue_firing(db, config, incident, now, {"reopened": True})
    plan_actions(db, config, incident, alert, config.rule_by_name(incident.rule), now)
    return incident


# --------------------------------------------------------------------------- poll


class _OpenRow(NamedTuple):
    """What a poll needs of an open incident when nothing about it changes (a tuple: one is
    made per open incident on every poll)."""

    id: int
    last_seen_at: float | None
    absent_polls: int
    opened_at: float
    severity: str


def apply_poll(
    db: Database,
    config: Config,
    fetched: Mapping[str, list[Alert]],
    failed: Mapping[str, str],
    now: float,
) -> PollResult:
    """Apply one poll's results in one write transaction.

    `fetched` has the alerts of each source read successfully; `failed` the error of each
    source that was not. Incidents whose alerts come from a failed source are left untouched.
    """
    result = PollResult(failed_sources=dict(failed))
    with write_tx(db):
        # Only what the steady state needs; a full Incident is loaded when something changes.
        # The ids come from the incidents_unresolved index: a long history is not scanned.
        open_by_key: dict[str, _OpenRow] = {
            key: _OpenRow(id_, last_seen, absent, opened, severity)
            for id_, key, last_seen, absent, opened, severity in incidents_store.open_rows(db)
        }
        alert_rows: dict[int, dict[tuple[str, str], str]] = {}
        # Row ids of the stored alerts, so the alerts seen again are touched by id in one
        # statement rather than one UPDATE per alert through the (incident, source, fp) index.
        alert_ids: dict[tuple[int, str, str], int] = {}
        held: dict[tuple[str, str], int] = {}
        for alert_id, incident_id, status, source, fp, state in alerts_store.uncleared(db):
            alert_ids[(incident_id, source, fp)] = alert_id
            if status == "resolved":
                # Resolved by hand while still firing: the same alerts stay with that incident
                # (no reopen, no page) until they clear; only a new alert opens again.
                held[(source, fp)] = incident_id
            else:
                alert_rows.setdefault(incident_id, {})[(source, fp)] = state
        if open_by_key:
            # Cleared alerts of open incidents are not in the index: an incident waiting to
            # resolve, or one of whose alerts cleared and may fire again.
            for alert_id, incident_id, source, fp, state in alerts_store.cleared_of_unresolved(db):
                alert_ids[(incident_id, source, fp)] = alert_id
                alert_rows.setdefault(incident_id, {})[(source, fp)] = state
        held_seen: set[tuple[str, str]] = set()

        # Group what the sources report now by incident key. The key is all an alert of an
        # open incident needs; the full route (labels, title, severity) of a group is worked
        # out only when the group opens or reopens an incident.
        groups: dict[str, tuple[Rule, list[Alert]]] = {}
        rules = config.rules
        for alerts in fetched.values():
            for alert in alerts:
                if alert.state not in ("firing", "suppressed"):
                    continue
                result.alerts_seen += 1
                rule = match_rule(rules, alert.labels)
                key = incident_key(rule, alert.labels)
                group = groups.get(key)
                if group is None:
                    groups[key] = (rule, [alert])
                else:
                    group[1].append(alert)

        reopen_candidates: dict[str, Incident] = {}
        if any(k not in open_by_key for k in groups):
            since = now - config.incidents.reopen_within
            for incident in incidents_store.resolved_since(db, since):
                reopen_candidates[incident.key] = incident

        source_order = {name: i for i, name in enumerate(config.sources)}
        new_incidents: list[Incident] = []
        seen_ids: set[int] = set()
        unchanged: list[int] = []  # ids of alert rows seen again in the same state
        unchanged_unknown: list[tuple[float, int, str, str]] = []
        batch = IncidentBatch(db)
        default_severity = config.defaults.severity
        for key, (rule, alerts) in groups.items():
            existing = open_by_key.get(key)
            if existing is not None:
                incident_id = existing.id
                current_severity = existing.severity
                result.updated += 1
            else:
                firing = [a for a in alerts if a.state == "firing"]
                if held:
                    held_seen.update(
                        (a.source, a.fingerprint)
                        for a in alerts
                        if (a.source, a.fingerprint) in held
                    )
                    firing = [a for a in firing if (a.source, a.fingerprint) not in held]
                if not firing:
                    continue  # suppressed or held alerts open nothing
                first = min(
                    firing,
                    key=lambda a: (
                        a.starts_at or now,
                        source_order.get(a.source, 0),
                        a.fingerprint,
                    ),
                )
                # The highest severity among its firing alerts, unless the rule fixes it.
                severity = group_severity(rule, (a.labels for a in firing), default_severity)
                previous = reopen_candidates.get(key)
                if previous is not None:
                    batch.flush()
                    incident = _reopen(db, config, previous, first, now, severity)
                    result.reopened.append(incident.id)
                    for alert_id, source, fp, state in alerts_store.keys_of(db, incident.id):
                        alert_ids[(incident.id, source, fp)] = alert_id
                        alert_rows.setdefault(incident.id, {})[(source, fp)] = state
                else:
                    # Labels, title and annotations all come from the alert that opens it.
                    routed = replace(routed_by(config, rule, key, first.labels), severity=severity)
                    started = min((a.starts_at for a in firing if a.starts_at), default=None)
                    incident = _insert_incident(
                        db, routed, first, first.source, now, started_at=started, batch=batch
                    )
                    batch.events.append(
                        event_row(
                            incident.id,
                            now,
                            "opened",
                            f"opened by rule {routed.rule.name} ({routed.rule.handler})"
                            f" from {first.source}",
                            data={"rule": routed.rule.name, "source": first.source},
                        )
                    )
                    new_incidents.append(incident)
                    plan_actions(
                        db, config, incident, first, routed.rule, now, before_write=batch.flush
                    )
                    result.opened.append(incident.id)
                incident_id = incident.id
                current_severity = incident.severity
                open_by_key[key] = _OpenRow(
                    incident_id, now, 0, incident.opened_at, incident.severity
                )
            seen_ids.add(incident_id)
            known = alert_rows.setdefault(incident_id, {})
            changed = []
            for a in alerts:
                if known.get((a.source, a.fingerprint)) != _state(a):
                    changed.append(a)
                else:
                    row_id = alert_ids.get((incident_id, a.source, a.fingerprint))
                    if row_id is not None:
                        unchanged.append(row_id)
                    else:
                        unchanged_unknown.append((now, incident_id, a.source, a.fingerprint))
            if changed:
                _upsert_alerts(db, incident_id, changed, now, known, batch)
                if rule.severity is None:
                    # An alert that fires now (new, or again) can raise the incident's severity.
                    top = max(
                        (a for a in changed if a.state == "firing"),
                        key=lambda a: severity_rank(alert_severity(a.labels, default_severity)),
                        default=None,
                    )
                    severity = (
                        current_severity
                        if top is None
                        else alert_severity(top.labels, default_severity)
                    )
                    if top is not None and severity_rank(severity) > severity_rank(
                        current_severity
                    ):
                        batch.flush()
                        full = get_incident(db, incident_id)
                        assert full is not None
                        raise_severity(db, config, full, severity, now, _raised_by(top, severity))
            if len(known) > len(alerts):
                present = {(a.source, a.fingerprint) for a in alerts}
                gone = [
                    sf
                    for sf, state in known.items()
                    if sf not in present and state != "cleared" and sf[0] in fetched
                ]
                if gone:
                    batch.flush()
                    _clear_alerts(db, incident_id, gone, now)
                    for sf in gone:
                        known[sf] = "cleared"
        batch.flush()
        unchanged.extend(
            alert_ids[(held[sf], sf[0], sf[1])] for sf in held_seen if held[sf] not in seen_ids
        )
        alerts_store.touch_by_id(db, unchanged, now)
        alerts_store.touch_by_key(db, unchanged_unknown)
        for sf, incident_id in held.items():
            if sf not in held_seen and sf[0] in fetched and incident_id not in seen_ids:
                _clear_alerts(db, incident_id, [sf], now)
        # Incidents opened or reopened by this poll were written with these values already.
        fresh = {*result.opened, *result.reopened}
        incidents_store.touch_seen(db, [i for i in seen_ids if i not in fresh], now)

        # Incidents whose alerts are all absent from the sources that answered.
        for open_row in list(open_by_key.values()):
            if open_row.id in seen_ids:
                continue
            known = alert_rows.get(open_row.id, {})
            if not known:
                continue  # anomaly and source_unreachable incidents are not the sources' to clear
            if any(source in failed for source, _ in known):
                continue  # never resolve on a source we could not read
            gone = [sf for sf, state in known.items() if state != "cleared"]
            if gone:
                _clear_alerts(db, open_row.id, gone, now)
            absent_polls = open_row.absent_polls + 1
            incidents_store.set_absent_polls(db, open_row.id, absent_polls)
            last_seen = open_row.last_seen_at or open_row.opened_at
            if (
                config.incidents.auto_resolve
                and absent_polls >= 2
                and now - last_seen >= config.incidents.resolve_after
            ):
                full = get_incident(db, open_row.id)
                assert full is not None
                resolution = "recovered" if full.fixed_at else "auto"
                _resolve(
                    db,
                    config,
                    full,
                    now,
                    resolution,
                    f"alerts cleared for {now - last_seen:.0f}s over {absent_polls} polls",
                    data={"absent_polls": absent_polls, "resolution": resolution},
                )
                result.resolved.append(open_row.id)

        # Storm protection: one summary per channel instead of one message per new incident.
        if len(new_incidents) > config.incidents.storm_max_new_per_tick:
            result.storm = True
            outbox.queue_storm(db, config, new_incidents, now)
        else:
            for incident in new_incidents:
                outbox.queue_firing(db, config, incident, now)

        _update_source_status(db, config, fetched, failed, now, result)
        _settle_flapping(db, config, now)
        if result.resolved:
            outbox.settle_storms(db, config, now)
    return result


def _state(alert: Alert) -> str:
    return "suppressed" if alert.state == "suppressed" else "firing"


def _settle_flapping(db: Database, config: Config, now: float) -> None:
    for incident in incidents_store.flapping(db):
        _stop_flapping_if_settled(db, config, incident, now)


def _update_source_status(
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
        incident = _open_unreachable_incident(db, name)
        if incident is not None and config.incidents.auto_resolve:
            _resolve(db, config, incident, now, "auto", f"source {name} answers again")
            result.resolved.append(incident.id)
    for name, error in failed.items():
        failures = status_store.source_failed(db, name, now, error[:500])
        if name not in failing_before:
            result.new_failures.append(name)
        if failures >= SOURCE_FAILURES_BEFORE_INCIDENT and not _open_unreachable_incident(db, name):
            _open_source_unreachable(db, config, name, error, failures, now, result)


def unreachable_key(name: str) -> str:
    return f"source_unreachable:source={name}"


def _open_unreachable_incident(db: Database, name: str) -> Incident | None:
    return incidents_store.unresolved_by_key(db, unreachable_key(name))


def _open_source_unreachable(
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
    incident = _insert_incident(db, routed, alert, name, now, started_at=last_ok or None)
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


# --------------------------------------------------------------------------- by hand


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
        incidents_store.mark_acknowledged(db, incident_id, by, now)
        # Acknowledging stops escalation.
        actions_store.skip_pending(db, incident_id, "acknowledged", now, kind="escalate")
        incident = replace(incident, status="acknowledged", acknowledged_at=now, acknowledged_by=by)
        add_event(db, incident_id, now, "acknowledged", f"acknowledged by {by}", actor=by)
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
        resolved = _resolve(
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


# --------------------------------------------------------------------------- other detectors


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
        incident = _reopen(db, config, latest, alert, now)
        add_event(db, incident.id, now, "note", message, data=data)
        return incident, "reopened"
    incident = _insert_incident(db, routed, alert, source, now, started_at=started_at)
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
    resolved = _resolve(db, config, incident, now, resolution, message, data=data)
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
    _record_raise(db, incident.id, previous, severity, now, message, data)
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


def _record_raise(
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


def _raised_by(alert: Alert, severity: str) -> str:
    return f"severity raised to {severity}: {alert.name or 'alert'} on {alert.source} is {severity}"
