"""A generic webhook: one JSON POST with the incident and the event."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from incident_cli.notify.channels.base import (
    LINK_KEYS,
    Channel,
    Message,
    Outgoing,
    facts_of,
    link_url,
    plain_text,
)
from incident_cli.notify.channels.options import EnvDefaults, Options, host_of, mapping, url

SCHEMA_VERSION = "1"


@dataclass(frozen=True)
class WebhookOptions(Options):
    ENV = EnvDefaults(when=("INCIDENT_WEBHOOK_URL",), yaml={"url": "${INCIDENT_WEBHOOK_URL}"})

    url: str | None = url(secret=True, required=True)
    # Custom headers are nearly always credentials (Authorization, X-Api-Key): secret values.
    headers: Mapping[str, str] = mapping(secret_values=True)

    def endpoint(self) -> str:
        return host_of(self.url)


class WebhookChannel(Channel[WebhookOptions]):
    type = "webhook"
    options_type = WebhookOptions
    default_rate_limit = 0.0

    def prepare(self, message: Message) -> Outgoing:
        facts = facts_of(message)
        body: dict[str, Any] = {
            "version": SCHEMA_VERSION,
            "event": message.event,
            "status": facts.status.lower(),
            "notification_id": message.id,
            "incident": message.facts.get("incident"),
            "text": plain_text(facts),
            "details": {
                k: link_url(v) if k in LINK_KEYS else v
                for k, v in message.facts.items()
                if k not in ("incident", "event")
            },
        }
        headers = {str(k): str(v) for k, v in dict(self.options.headers or {}).items()}
        return Outgoing("POST", str(self.options.url), body, headers)
