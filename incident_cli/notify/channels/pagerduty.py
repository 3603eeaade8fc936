"""PagerDuty: the Events API v2 (trigger, acknowledge and resolve under one dedup_key per
incident) and the REST API v2 to read acks and resolves back (`incident sync`)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from incident_cli.notify.channels.base import Channel, Message, Outgoing, clip, facts_of, one_line
from incident_cli.notify.channels.options import EnvDefaults, Options, flag, host_of, text, url
from incident_cli.notify.channels.options import url as url_option

SEVERITIES = {"critical": "critical", "error": "error", "warning": "warning", "info": "info"}
ACTIONS = {
    "firing": "trigger",
    "escalation": "trigger",
    "storm": "trigger",
    "breaker": "trigger",
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
    if message.event == "breaker":
        return f"incident-cli/breaker/{message.facts.get('opened_at') or message.id}"
    if message.event == "storm" or not incident:
        # A storm's summary and its resolution share the storm's id.
        return f"incident-cli/storm/{message.facts.get('storm_id') or message.id}"
    return incident_dedup_key(incident.get("id"), str(incident.get("key", "")))


def incident_dedup_key(incident_id: Any, key: str) -> str:
    """The dedup_key of one incident's events (what the REST API calls its incident_key)."""
    digest = hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()
    return f"incident-cli/{incident_id}/{digest[:16]}"


EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
REST_URL = "https://api.pagerduty.com"


@dataclass(frozen=True)
class PagerDutyOptions(Options):
    ENV = EnvDefaults(
        when=("PAGERDUTY_API_KEY",),
        yaml={"routing_key": "${PAGERDUTY_API_KEY}", "min_severity": "critical"},
    )
    posts_notices = False  # a page that nothing resolves

    routing_key: str | None = text(secret=True, required=True)
    url: str | None = url(fallback=EVENTS_URL)
    source: str | None = text()
    # Reading acks and resolves back (`incident sync`): a read-only REST API token.
    api_token: str | None = text(secret=True, env="PAGERDUTY_API_TOKEN")
    sync: bool = flag()
    api_url: str | None = url_option(fallback=REST_URL)

    def reads_back(self) -> bool:
        return self.sync

    def problem(self) -> tuple[str | None, str] | None:
        if self.sync and not self.api_token:
            return "api_token", (
                "sync: true needs a REST API token"
                " (api_token, api_token_file or PAGERDUTY_API_TOKEN)"
            )
        return None

    def endpoint(self) -> str:
        return host_of(self.url)


class PagerDutyChannel(Channel[PagerDutyOptions]):
    type = "pagerduty"
    options_type = PagerDutyOptions
    default_rate_limit = 2.0  # PagerDuty: 120 events a minute per routing key

    def prepare(self, message: Message) -> Outgoing | None:
        action = ACTIONS.get(message.event)
        if action is None:
            return None  # an approval request is for chat, email or a webhook, not a page
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


# --------------------------------------------------------------------------- reading back


@dataclass(frozen=True)
class RemoteState:
    """What PagerDuty says of the incident behind one dedup_key: its status, and who acked."""

    status: str  # triggered | acknowledged | resolved
    by: str | None = None


def read_state(options: PagerDutyOptions, key: str, timeout: float) -> RemoteState | None:
    """The newest PagerDuty incident whose incident_key is `key` (REST API v2, list incidents),
    or None when there is none. Raises TransportError, with its retry_after on a 429."""
    from incident_cli.http import HTTPFailure, exchange
    from incident_cli.notify.channels.base import TransportError

    base = str(options.api_url).rstrip("/")
    try:
        reply = exchange(
            "GET",
            f"{base}/incidents",
            timeout=timeout,
            params={"incident_key": key, "sort_by": "created_at:desc", "limit": "1"},
            headers={
                "Authorization": f"Token token={options.api_token}",
                "Accept": "application/vnd.pagerduty+json;version=2",
            },
        )
    except HTTPFailure as exc:
        raise TransportError(exc.reason) from None
    if reply.status == 429:
        raise TransportError("rate limited (HTTP 429)", retry_after=reply.retry_after or 60.0)
    if not reply.ok:
        raise TransportError(f"HTTP {reply.status}")
    body = reply.json()
    found = body.get("incidents") if isinstance(body, dict) else None
    if not isinstance(found, list):
        raise TransportError("the answer is not a list of incidents")
    if not found or not isinstance(found[0], dict):
        return None
    status = found[0].get("status")
    if status not in ("triggered", "acknowledged", "resolved"):
        raise TransportError("the answer has no incident status")
    return RemoteState(str(status), _who(found[0], str(status)))


def _who(incident: dict[str, Any], status: str) -> str | None:
    """Who acknowledged (the newest acknowledgement's acknowledger, else an assignee) or
    resolved (whoever last changed its status)."""
    places = [("last_status_change_by", "")]
    if status == "acknowledged":
        places = [("acknowledgements", "acknowledger"), ("assignments", "assignee"), *places]
    for field, inner in places:
        found = incident.get(field)
        entries = found if isinstance(found, list) else [{"": found}]
        for entry in reversed(entries):
            person = entry.get(inner) if isinstance(entry, dict) else None
            if isinstance(person, dict):
                name = person.get("summary") or person.get("name") or person.get("id")
                if name and isinstance(name, str | int):
                    return one_line(str(name))[:200] or None
    return None
