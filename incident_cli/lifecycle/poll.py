"""Applying one poll: what the sources report now against the open incidents, in one transaction."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from incident_cli.config.model import Config, Rule, severity_rank
from incident_cli.handlers.planning import plan_actions
from incident_cli.lifecycle.alerts import alert_state, clear_alerts, record_alerts
from incident_cli.lifecycle.changes import open_incident, reopen, resolve
from incident_cli.lifecycle.detectors import raise_severity, raised_by
from incident_cli.lifecycle.flapping import settle_flapping
from incident_cli.lifecycle.routing import (
    alert_severity,
    group_severity,
    incident_key,
    match_rule,
    routed_by,
)
from incident_cli.lifecycle.source_health import update_source_status
from incident_cli.models import Alert, Incident
from incident_cli.notify import outbox
from incident_cli.store import alerts as alerts_store
from incident_cli.store import incidents as incidents_store
from incident_cli.store.batch import IncidentBatch
from incident_cli.store.database import Database, write_tx
from incident_cli.store.incidents import get_incident
from incident_cli.store.timeline import (
    event_row,
)


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
                    incident = reopen(db, config, previous, first, now, severity)
                    result.reopened.append(incident.id)
                    for alert_id, source, fp, state in alerts_store.keys_of(db, incident.id):
                        alert_ids[(incident.id, source, fp)] = alert_id
                        alert_rows.setdefault(incident.id, {})[(source, fp)] = state
                else:
                    # Labels, title and annotations all come from the alert that opens it.
                    routed = replace(routed_by(config, rule, key, first.labels), severity=severity)
                    started = min((a.starts_at for a in firing if a.starts_at), default=None)
                    incident = open_incident(
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
                if known.get((a.source, a.fingerprint)) != alert_state(a):
                    changed.append(a)
                else:
                    row_id = alert_ids.get((incident_id, a.source, a.fingerprint))
                    if row_id is not None:
                        unchanged.append(row_id)
                    else:
                        unchanged_unknown.append((now, incident_id, a.source, a.fingerprint))
            if changed:
                record_alerts(db, incident_id, changed, now, known, batch)
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
                        raise_severity(db, config, full, severity, now, raised_by(top, severity))
            if len(known) > len(alerts):
                present = {(a.source, a.fingerprint) for a in alerts}
                gone = [
                    sf
                    for sf, state in known.items()
                    if sf not in present and state != "cleared" and sf[0] in fetched
                ]
                if gone:
                    batch.flush()
                    clear_alerts(db, incident_id, gone, now)
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
                clear_alerts(db, incident_id, [sf], now)
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
                clear_alerts(db, open_row.id, gone, now)
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
                resolve(
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

        update_source_status(db, config, fetched, failed, now, result)
        settle_flapping(db, config, now)
        if result.resolved:
            outbox.settle_storms(db, config, now)
    return result
