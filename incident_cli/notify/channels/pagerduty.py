"""PagerDuty Events API v2: trigger, acknowledge and resolve under one dedup_key per incident."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from incident_cli.notify.channels.base import Channel, Message, Outgoing, clip, facts_of, one_line
from incident_cli.notify.channels.options import EnvDefaults, Options, host_of, text, url

SEVERITIES = {"critical": "critical", "error": "error", "warning": "warning", "info": "info"}
ACTIONS = {
    "firing": "trigger",
    "escalation": "trigger",
    "storm": "trigger",
    "acknowledged": "acknowledge",
    "resolved": "resolve",
}
MAX_DETAIL_VALUE = 1024
MAX_DETAILS = 50


def dedup_key(message: Message) -> str:
    """One key per incident for its whole life (reopen included); ≤ 255 characters.

    The hash of the incident key keeps a key from one state DB apart from another's incident
    that happens to get the same id.
    """
    incident = message.facts.get("incident") or {}
    if message.event == "storm" or not incident:
        # A storm's summary and its resolution share the storm's id.
        return f"incident-cli/storm/{message.facts.get('storm_id') or message.id}"
    digest = hashlib.sha256(str(incident.get("key", "")).encode("utf-8", "replace")).hexdigest()
    return f"incident-cli/{incident.get('id')}/{digest[:16]}"


EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"


@dataclass(frozen=True)
class PagerDutyOptions(Options):
    ENV = EnvDefaults(
        when=("PAGERDUTY_API_KEY",),
        yaml={"routing_key": "${PAGERDUTY_API_KEY}", "min_severity": "critical"},
    )

    routing_key: str | None = text(secret=True, required=True)
    url: str | None = url(fallback=EVENTS_URL)
    source: str | None = text()

    def endpoint(self) -> str:
        return host_of(self.url)


class PagerDutyChannel(Channel[PagerDutyOptions]):
    type = "pagerduty"
    options_type = PagerDutyOptions
    default_rate_limit = 2.0  # PagerDuty: 120 events a minute per routing key

    def prepare(self, message: Message) -> Outgoing:
        action = ACTIONS[message.event]
        event: dict[str, Any] = {
            "routing_key": str(self.options.routing_key),
            "event_action": action,
            "dedup_key": dedup_key(message),
        }
        if action == "trigger":
            event.update(self._trigger(message))
        return Outgoing("POST", str(self.options.url), event)

    def _trigger(self, message: Message) -> dict[str, Any]:
        facts = facts_of(message)
        incident = message.facts.get("incident") or {}
        labels = facts.labels
        summary = f"[{facts.status}] {one_line(facts.title)}"
        if facts.summary:
            summary += f": {one_line(facts.summary)}"
        source = (
            self.options.source or labels.get("instance") or incident.get("source") or "incident"
        )
        details: dict[str, Any] = {
            k: clip(v, MAX_DETAIL_VALUE) for k, v in sorted(labels.items())[:MAX_DETAILS]
        }
        if facts.incident_id is not None:
            details["incident_id"] = facts.incident_id
        if facts.summary:
            details["summary"] = clip(facts.summary, MAX_DETAIL_VALUE)
        if facts.notes:
            details["notes"] = clip(" ".join(facts.notes), MAX_DETAIL_VALUE)
        if facts.ack_command:
            details["acknowledge"] = facts.ack_command
        payload: dict[str, Any] = {
            "summary": clip(summary, 1024),
            "source": clip(str(source), 255),
            "severity": SEVERITIES.get(facts.severity, "warning"),
            "custom_details": details,
        }
        if incident.get("started_at") or incident.get("opened_at"):
            payload["timestamp"] = incident.get("started_at") or incident.get("opened_at")
        if labels.get("service"):
            payload["component"] = clip(labels["service"], 255)
        if labels.get("job"):
            payload["group"] = clip(labels["job"], 255)
        if labels.get("alertname"):
            payload["class"] = clip(labels["alertname"], 255)
        links = []
        if facts.runbook:
            links.append({"href": facts.runbook, "text": "Runbook"})
        if facts.grafana:
            links.append({"href": facts.grafana, "text": "Grafana"})
        out: dict[str, Any] = {"payload": payload, "client": "incident"}
        if links:
            out["links"] = links
        return out
