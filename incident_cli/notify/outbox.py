"""Queueing notifications: which channels hear about which change, written with the change."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from incident_cli.config.model import Config, severity_rank
from incident_cli.models import Incident, OutboxRow, incident_name
from incident_cli.store import outbox as store
from incident_cli.store.database import Database
from incident_cli.store.incidents import count_unresolved

EVENTS = (
    "firing",
    "acknowledged",
    "resolved",
    "escalation",
    "storm",
    "approval",
    "breaker",
    "mass_resolve",
)


def routed_channels(config: Config, incident: Incident) -> list[str]:
    """The rule's `notify` (else `defaults.notify`), enabled channels that take this severity."""
    rule = config.rule_by_name(incident.rule)
    names = rule.notify if rule.notify is not None else config.defaults.notify
    out = []
    for channel in config.enabled_channels(names):
        if channel.min_severity and severity_rank(incident.severity) < severity_rank(
            channel.min_severity
        ):
            continue
        out.append(channel.name)
    return out


def channels_that_got_firing(db: Database, incident_id: int) -> list[str]:
    """Channels with a firing (or escalation) message for this incident that is sent or still
    on its way: they are the ones to hear that it was acknowledged or resolved."""
    return store.channels_with_firing(db, incident_id)


def message_for(
    config: Config, incident: Incident, event: str, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The facts a channel renders. A snapshot at queue time; it never holds credentials."""
    rule = config.rule_by_name(incident.rule)
    runbook = rule.runbook or incident.annotations.get("runbook_url") or None
    return {
        "event": event,
        "incident": incident.to_json(),
        "runbook": runbook,
        "grafana": config.grafana_url,
        "ack_command": f"incident ack {incident.id}",
        **(extra or {}),
    }


def queue(
    db: Database,
    channels: Iterable[str],
    incident_id: int | None,
    event: str,
    message: Mapping[str, Any],
    now: float,
) -> int:
    """Insert one pending row per channel. Callers hold the state change's write transaction."""
    assert event in EVENTS, event
    return store.enqueue(db, channels, incident_id, event, message, now)


def queue_firing(
    db: Database,
    config: Config,
    incident: Incident,
    now: float,
    extra: Mapping[str, Any] | None = None,
) -> int:
    return queue(
        db,
        routed_channels(config, incident),
        incident.id,
        "firing",
        message_for(config, incident, "firing", extra),
        now,
    )


def queue_followup(
    db: Database,
    config: Config,
    incident: Incident,
    event: str,
    now: float,
    extra: Mapping[str, Any] | None = None,
) -> int:
    """acknowledged / resolved go where the firing message went (and only there)."""
    channels = [c for c in channels_that_got_firing(db, incident.id) if c in config.channels]
    return queue(db, channels, incident.id, event, message_for(config, incident, event, extra), now)


def queue_escalation(
    db: Database, config: Config, incident: Incident, now: float, reason: str
) -> int:
    channels = [c.name for c in config.enabled_channels(config.escalation_channels)]
    message = message_for(config, incident, "escalation", {"reason": reason})
    return queue(db, channels, incident.id, "escalation", message, now)


def queue_approval(
    db: Database, config: Config, incident: Incident, now: float, request: Mapping[str, Any]
) -> int:
    """A command waits for a human: to the rule's channels, with its argv (secrets masked)
    and the commands that approve or deny it (`request`)."""
    message = message_for(config, incident, "approval", request)
    return queue(db, routed_channels(config, incident), incident.id, "approval", message, now)


def queue_breaker(db: Database, config: Config, now: float, facts: Mapping[str, Any]) -> int:
    """The recovery breaker opened: one message to each escalation channel."""
    channels = [c.name for c in config.enabled_channels(config.escalation_channels)]
    message = {"event": "breaker", "grafana": config.grafana_url, **facts}
    return queue(db, channels, None, "breaker", message, now)


def queue_storm(db: Database, config: Config, incidents: list[Incident], now: float) -> int:
    """One summary per channel instead of one message per incident.

    The storm has an id and remembers its incidents: when they have all resolved, the channels
    that got the summary get one `resolved` for it (settle_storms), so a page it raised clears.
    """
    storm_id = f"{int(now)}-{incidents[0].id}" if incidents else f"{int(now)}"
    by_channel: dict[str, list[Incident]] = {}
    for incident in incidents:
        for channel in routed_channels(config, incident):
            by_channel.setdefault(channel, []).append(incident)
    total = 0
    for channel, members in by_channel.items():
        names = Counter(incident_name(i.labels, i.rule) for i in members)
        severities = Counter(i.severity for i in members)
        message = {
            "event": "storm",
            "count": len(members),
            "top_alerts": [{"alertname": n, "incidents": c} for n, c in names.most_common(10)],
            "by_severity": dict(severities),
            "incident_ids": [i.id for i in members[:50]],
            "member_ids": [i.id for i in members],
            "storm_id": storm_id,
            "grafana": config.grafana_url,
            "hint": "incident list --status open",
        }
        total += queue(db, [channel], None, "storm", message, now)
    return total


def settle_storms(db: Database, config: Config, now: float) -> int:
    """Queue one `resolved` per channel for every storm whose incidents have all resolved (or
    been archived). Callers hold the write transaction that resolved the last of them."""
    pending: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for channel, message_json in store.unsettled_storms(db):
        message = json.loads(message_json)
        if message.get("storm_id"):
            pending.setdefault(message["storm_id"], []).append((channel, message))
    queued = 0
    for storm_id, rows in pending.items():
        members = sorted({i for _, m in rows for i in m.get("member_ids", [])})
        unresolved = count_unresolved(db, members)
        if unresolved:
            continue
        for channel, storm in rows:
            if channel not in config.channels or not config.channels[channel].options.posts_storms:
                continue  # Statuspage never posted the storm
            resolved = {
                "event": "resolved",
                "storm_id": storm_id,
                "count": storm.get("count", 0),
                "top_alerts": storm.get("top_alerts", []),
                "by_severity": storm.get("by_severity", {}),
                "grafana": config.grafana_url,
            }
            queued += queue(db, [channel], None, "resolved", resolved, now)
    return queued


def pending_rows(db: Database, only_channel: str | None = None) -> list[OutboxRow]:
    return [OutboxRow(*r) for r in store.pending(db, only_channel)]
