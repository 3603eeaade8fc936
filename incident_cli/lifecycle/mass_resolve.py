"""The mass-resolve guard: when one poll would clear most open incidents at once, hold them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from incident_cli.config.model import Config, IncidentsConfig
from incident_cli.models import Incident, incident_name
from incident_cli.notify import outbox
from incident_cli.store import incidents as incidents_store
from incident_cli.store.database import Database
from incident_cli.store.incidents import get_incident
from incident_cli.store.timeline import add_event
from incident_cli.times import to_rfc3339

GUARD_KEY = "incidents.mass_resolve_guard"


def trips(settings: IncidentsConfig, clearing: int, open_count: int) -> bool:
    """True when clearing `clearing` of `open_count` open incidents in one poll is too many:
    more than max_fraction of at least min_open (a Prometheus restart, a broken rule file)."""
    return (
        settings.mass_resolve_hold > 0
        and open_count >= settings.mass_resolve_min_open
        and clearing > settings.mass_resolve_max_fraction * open_count
    )


def hold_clears(
    db: Database, config: Config, ids: Sequence[int], open_count: int, now: float
) -> float:
    """Hold the clears of these incidents until now + hold: one timeline note on each, one
    notice per channel that routes them, in the caller's write transaction. Returns the time
    the hold ends."""
    until = now + config.incidents.mass_resolve_hold
    incidents_store.hold_clears(db, list(ids), until)
    incidents = [i for i in (get_incident(db, id_) for id_ in ids) if i is not None]
    why = (
        f"the alerts of {len(ids)} of {open_count} open incidents vanished in one poll"
        f" ({GUARD_KEY}): kept open until {to_rfc3339(until)} unless they stay gone"
    )
    for incident in incidents:
        add_event(
            db,
            incident.id,
            now,
            "note",
            f"clear held: {why}",
            data={"held_until": until, "clearing": len(ids), "open": open_count},
        )
    queue_notice(db, config, incidents, open_count, until, now)
    return until


def queue_notice(
    db: Database,
    config: Config,
    incidents: Sequence[Incident],
    open_count: int,
    until: float,
    now: float,
) -> int:
    """One `mass_resolve` message per channel that routes any held incident (kinds that page or
    publish, PagerDuty and Statuspage, are not told: nothing would ever resolve it there)."""
    by_channel: dict[str, list[Incident]] = {}
    for incident in incidents:
        for channel in outbox.routed_channels(config, incident):
            by_channel.setdefault(channel, []).append(incident)
    queued = 0
    for channel, members in by_channel.items():
        if not config.channels[channel].options.posts_notices:
            continue
        names = Counter(incident_name(i.labels, i.rule) for i in members)
        message = {
            "event": "mass_resolve",
            "count": len(members),
            "held": len(incidents),
            "open": open_count,
            "held_until": to_rfc3339(until),
            "top_alerts": [{"alertname": n, "incidents": c} for n, c in names.most_common(10)],
            "by_severity": dict(Counter(i.severity for i in members)),
            "incident_ids": [i.id for i in members[:50]],
            "grafana": config.grafana_url,
            "hint": "incident list --status open",
        }
        queued += outbox.queue(db, [channel], None, "mass_resolve", message, now)
    return queued
