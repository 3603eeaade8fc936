"""Applying one poll: what the sources report now against the open incidents, in one transaction."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import NamedTuple

from incident_cli.config.model import Config, Rule, severity_rank
from incident_cli.handlers.planning import plan_actions
from incident_cli.lifecycle.alerts import alert_state, clear_alerts, record_alerts
from incident_cli.lifecycle.changes import open_incident, reopen, resolve
from incident_cli.lifecycle.detectors import raise_severity, raised_by
from incident_cli.lifecycle.flapping import settle_flapping
from incident_cli.lifecycle.mass_resolve import hold_clears, trips
from incident_cli.lifecycle.result import PollResult
from incident_cli.lifecycle.routing import group_severity, incident_key, match_rule, routed_by
from incident_cli.lifecycle.source_health import update_source_status
from incident_cli.models import Alert, Incident, alert_severity
from incident_cli.notify import outbox
from incident_cli.store import alerts as alerts_store
from incident_cli.store import incidents as incidents_store
from incident_cli.store.batch import IncidentBatch
from incident_cli.store.database import Database, write_tx
from incident_cli.store.incidents import get_incident
from incident_cli.store.timeline import (
    event_row,
)


class _OpenRow(NamedTuple):
    """What a poll needs of an open incident when nothing about it changes (a tuple: one is
    made per open incident on every poll)."""

    id: int
    last_seen_at: float | None
    absent_polls: int
    opened_at: float
    severity: str
    clear_held_until: float | None = None


def apply_poll(
    db: Database,
    config: Config,
    fetched: Mapping[str, list[Alert]],
    failed: Mapping[str, str],
    now: float,
    *,
    partial: Collection[str] = (),
) -> PollResult:
    """Apply one poll's results in one write transaction.

    `fetched` has the alerts of each source read successfully; `failed` the error of each
    source that was not. Incidents whose alerts come from a failed source are left untouched.
    `partial` names the sources read with a replica down: what they report opens and updates
    incidents, but what they do not report may be on the replica that is down, so none of
    their incidents is cleared or resolved.
    """
    poll = _Poll(db, config, fetched, failed, now)
    poll.unread.update(partial)
    result = poll.result
    with write_tx(db):
        poll.read_state()
        groups = poll.group_alerts()
        poll.read_reopen_candidates(groups)
        for key, (rule, alerts) in groups.items():
            poll.apply_group(key, rule, alerts)
        poll.batch.flush()  # before any statement that touches the batched tables
        poll.touch_seen()
        poll.resolve_absent()
        poll.queue_new()
        update_source_status(db, config, fetched, failed, now, result)
        settle_flapping(db, config, now)
        if result.resolved:
            outbox.settle_storms(db, config, now)
    return result


class _Poll:
    """One poll's state while it is applied: what is stored, what the sources say, and what
    changed. Each step is a method, called in apply_poll's order inside its transaction."""

    def __init__(
        self,
        db: Database,
        config: Config,
        fetched: Mapping[str, list[Alert]],
        failed: Mapping[str, str],
        now: float,
    ) -> None:
        self.db, self.config, self.fetched, self.failed, self.now = db, config, fetched, failed, now
        self.result = PollResult(failed_sources=dict(failed))
        # The sources whose silence says nothing: failed, or read with a replica down.
        self.unread: set[str] = set(failed)
        self.open_by_key: dict[str, _OpenRow] = {}
        self.alert_rows: dict[int, dict[tuple[str, str], str]] = {}
        # Row ids of the stored alerts, so the alerts seen again are touched by id in one
        # statement rather than one UPDATE per alert through the (incident, source, fp) index.
        self.alert_ids: dict[tuple[int, str, str], int] = {}
        self.held: dict[tuple[str, str], int] = {}
        self.held_seen: set[tuple[str, str]] = set()
        self.reopen_candidates: dict[str, Incident] = {}
        self.source_order = {name: i for i, name in enumerate(config.sources)}
        self.new_incidents: list[Incident] = []
        self.seen_ids: set[int] = set()
        self.unchanged: list[int] = []  # ids of alert rows seen again in the same state
        self.unchanged_unknown: list[tuple[float, int, str, str]] = []
        self.batch = IncidentBatch(db)
        self.default_severity = config.defaults.severity

    # ------------------------------------------------------------------- 1. read

    def read_state(self) -> None:
        """The open incidents and the alert rows a poll compares with (no full rows: a full
        Incident is loaded only when something changes)."""
        db = self.db
        # The ids come from the incidents_unresolved index: a long history is not scanned.
        self.open_by_key = {
            key: _OpenRow(id_, last_seen, absent, opened, severity, held)
            for id_, key, last_seen, absent, opened, severity, held in incidents_store.open_rows(db)
        }
        self.open_at_start = len(self.open_by_key)
        alert_ids, alert_rows, held = self.alert_ids, self.alert_rows, self.held
        for alert_id, incident_id, status, source, fp, state in alerts_store.uncleared(db):
            alert_ids[(incident_id, source, fp)] = alert_id
            if status == "resolved":
                # Resolved by hand while still firing: the same alerts stay with that incident
                # (no reopen, no page) until they clear; only a new alert opens again.
                held[(source, fp)] = incident_id
            else:
                alert_rows.setdefault(incident_id, {})[(source, fp)] = state
        if self.open_by_key:
            # Cleared alerts of open incidents are not in the index: an incident waiting to
            # resolve, or one of whose alerts cleared and may fire again.
            for alert_id, incident_id, source, fp, state in alerts_store.cleared_of_unresolved(db):
                alert_ids[(incident_id, source, fp)] = alert_id
                alert_rows.setdefault(incident_id, {})[(source, fp)] = state

    # ------------------------------------------------------------------- 2. route

    def group_alerts(self) -> dict[str, tuple[Rule, list[Alert]]]:
        """What the sources report now, grouped by incident key. The key is all an alert of an
        open incident needs; the full route (labels, title, severity) of a group is worked out
        only when the group opens or reopens an incident."""
        groups: dict[str, tuple[Rule, list[Alert]]] = {}
        rules = self.config.rules
        result = self.result
        for alerts in self.fetched.values():
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
        return groups

    def read_reopen_candidates(self, groups: Mapping[str, object]) -> None:
        """Incidents resolved within reopen_within, when some group has no open incident."""
        if any(k not in self.open_by_key for k in groups):
            since = self.now - self.config.incidents.reopen_within
            for incident in incidents_store.resolved_since(self.db, since):
                self.reopen_candidates[incident.key] = incident

    # ------------------------------------------------------------------- 3. open/update

    def apply_group(self, key: str, rule: Rule, alerts: list[Alert]) -> None:
        """One group: update its open incident, or open (or reopen) one; then its alerts."""
        existing = self.open_by_key.get(key)
        # A group that opens or reopens an incident now gave it the highest severity of its
        # firing alerts already: with no held alert among them, none can raise it.
        settled = existing is None and not self.held
        if existing is not None:
            incident_id, current_severity = existing.id, existing.severity
            self.result.updated += 1
        else:
            opened = self._open_or_reopen(key, rule, alerts)
            if opened is None:
                return
            incident_id, current_severity = opened
        self.seen_ids.add(incident_id)
        self._record_group_alerts(incident_id, current_severity, rule, alerts, settled)

    def _open_or_reopen(self, key: str, rule: Rule, alerts: list[Alert]) -> tuple[int, str] | None:
        db, config, now, result, batch = self.db, self.config, self.now, self.result, self.batch
        firing = [a for a in alerts if a.state == "firing"]
        held = self.held
        if held:
            self.held_seen.update(
                (a.source, a.fingerprint) for a in alerts if (a.source, a.fingerprint) in held
            )
            firing = [a for a in firing if (a.source, a.fingerprint) not in held]
        if not firing:
            return None  # suppressed or held alerts open nothing
        source_order = self.source_order
        first = min(
            firing,
            key=lambda a: (a.starts_at or now, source_order.get(a.source, 0), a.fingerprint),
        )
        # The highest severity among its firing alerts, unless the rule fixes it.
        severity = group_severity(rule, (a.labels for a in firing), self.default_severity)
        previous = self.reopen_candidates.get(key)
        if previous is not None:
            batch.flush()
            incident = reopen(db, config, previous, first, now, severity)
            result.reopened.append(incident.id)
            for alert_id, source, fp, state in alerts_store.keys_of(db, incident.id):
                self.alert_ids[(incident.id, source, fp)] = alert_id
                self.alert_rows.setdefault(incident.id, {})[(source, fp)] = state
        else:
            # Labels, title and annotations all come from the alert that opens it.
            routed = routed_by(config, rule, key, first.labels, severity)
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
            self.new_incidents.append(incident)
            plan_actions(db, config, incident, first, routed.rule, now, before_write=batch.flush)
            result.opened.append(incident.id)
        self.open_by_key[key] = _OpenRow(incident.id, now, 0, incident.opened_at, incident.severity)
        return incident.id, incident.severity

    def _record_group_alerts(
        self,
        incident_id: int,
        current_severity: str,
        rule: Rule,
        alerts: list[Alert],
        settled: bool = False,
    ) -> None:
        """Changed alerts recorded (a firing one may raise the severity), unchanged ones noted
        for touch_seen, and the incident's alerts its sources no longer report cleared."""
        db, now, batch = self.db, self.now, self.batch
        known = self.alert_rows.setdefault(incident_id, {})
        changed = []
        alert_ids = self.alert_ids
        for a in alerts:
            if known.get((a.source, a.fingerprint)) != alert_state(a):
                changed.append(a)
            else:
                row_id = alert_ids.get((incident_id, a.source, a.fingerprint))
                if row_id is not None:
                    self.unchanged.append(row_id)
                else:
                    self.unchanged_unknown.append((now, incident_id, a.source, a.fingerprint))
        if changed:
            record_alerts(db, incident_id, changed, now, known, batch)
            if rule.severity is None and not settled:
                self._raise_from(incident_id, current_severity, changed)
        if len(known) > len(alerts):
            present = {(a.source, a.fingerprint) for a in alerts}
            gone = [
                sf
                for sf, state in known.items()
                if sf not in present and state != "cleared" and sf[0] in self.fetched
            ]
            if gone:
                batch.flush()
                clear_alerts(db, incident_id, gone, now)
                for sf in gone:
                    known[sf] = "cleared"

    def _raise_from(self, incident_id: int, current_severity: str, changed: list[Alert]) -> None:
        """An alert that fires now (new, or again) can raise the incident's severity."""
        default = self.default_severity
        top = max(
            (a for a in changed if a.state == "firing"),
            key=lambda a: severity_rank(alert_severity(a.labels, default)),
            default=None,
        )
        if top is None:
            return
        severity = alert_severity(top.labels, default)
        if severity_rank(severity) > severity_rank(current_severity):
            self.batch.flush()
            full = get_incident(self.db, incident_id)
            assert full is not None
            raise_severity(self.db, self.config, full, severity, self.now, raised_by(top, severity))

    # ------------------------------------------------------------------- 4. clear and touch

    def touch_seen(self) -> None:
        """Alerts seen again and the incidents seen: last_seen_at now, in bulk; held alerts
        (of incidents resolved by hand) no longer reported cleared."""
        db, now, held, held_seen = self.db, self.now, self.held, self.held_seen
        self.unchanged.extend(
            self.alert_ids[(held[sf], sf[0], sf[1])]
            for sf in held_seen
            if held[sf] not in self.seen_ids
        )
        alerts_store.touch_by_id(db, self.unchanged, now)
        alerts_store.touch_by_key(db, self.unchanged_unknown)
        for sf, incident_id in held.items():
            if sf not in held_seen and sf[0] in self.fetched and incident_id not in self.seen_ids:
                clear_alerts(db, incident_id, [sf], now)
        # Incidents opened or reopened by this poll were written with these values already.
        fresh = {*self.result.opened, *self.result.reopened}
        incidents_store.touch_seen(db, [i for i in self.seen_ids if i not in fresh], now)

    # ------------------------------------------------------------------- 5. resolve

    def resolve_absent(self) -> None:
        """Incidents whose alerts are all absent from the sources that answered: clear them,
        count the poll, and resolve once they stayed away long enough. When this poll would
        clear too many at once (incidents.mass_resolve_guard), their clears are held."""
        absent: list[tuple[_OpenRow, list[tuple[str, str]]]] = []
        for open_row in list(self.open_by_key.values()):
            if open_row.id in self.seen_ids:
                continue
            known = self.alert_rows.get(open_row.id, {})
            if not known:
                continue  # anomaly and source_unreachable incidents are not the sources' to clear
            if any(source in self.unread for source, _ in known):
                continue  # never resolve on a source we could not read (or not all of it)
            absent.append((open_row, [sf for sf, state in known.items() if state != "cleared"]))
        held = self._held(absent)
        for open_row, gone in absent:
            if open_row.id in held:
                # Held: its alerts stay as they were; the polls it is absent from still count,
                # so it resolves as soon as the hold ends if it is still gone.
                incidents_store.set_absent_polls(self.db, open_row.id, open_row.absent_polls + 1)
            else:
                self._clear_or_resolve(open_row, gone)

    def _held(self, absent: list[tuple[_OpenRow, list[tuple[str, str]]]]) -> set[int]:
        """The incidents whose clears are held: those already held whose hold has not ended,
        and, when this poll's new clears trip the guard, those too. An incident whose hold
        ended is cleared like any other and never held again for the same absence."""
        now = self.now
        held = {
            row.id
            for row, _ in absent
            if row.clear_held_until is not None and row.clear_held_until > now
        }
        clearing = [row.id for row, gone in absent if gone and row.clear_held_until is None]
        if trips(self.config.incidents, len(clearing), self.open_at_start):
            hold_clears(self.db, self.config, clearing, self.open_at_start, now)
            held.update(clearing)
            self.result.held.extend(clearing)
        return held

    def _clear_or_resolve(self, open_row: _OpenRow, gone: list[tuple[str, str]]) -> None:
        db, config, now = self.db, self.config, self.now
        if gone:
            clear_alerts(db, open_row.id, gone, now)
        absent_polls = open_row.absent_polls + 1
        last_seen = open_row.last_seen_at or open_row.opened_at
        # Last seen after now: the clock stepped back since. How long the alerts have been
        # away is unknown, so the wait for resolve_after starts again now (not when the
        # clock gets back to where it was, maybe hours later).
        stepped_back = last_seen > now
        last_seen = min(last_seen, now)
        incidents_store.set_absent_polls(
            db, open_row.id, absent_polls, now if stepped_back else None
        )
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
            self.result.resolved.append(open_row.id)

    # ------------------------------------------------------------------- 6. notify

    def queue_new(self) -> None:
        """Storm protection: one summary per channel instead of one message per new incident."""
        db, config, now = self.db, self.config, self.now
        if len(self.new_incidents) > config.incidents.storm_max_new_per_tick:
            self.result.storm = True
            outbox.queue_storm(db, config, self.new_incidents, now)
        else:
            for incident in self.new_incidents:
                outbox.queue_firing(db, config, incident, now)
