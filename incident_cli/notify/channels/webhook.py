"""A generic webhook: one JSON POST with the incident and the event."""

from __future__ import annotations

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

SCHEMA_VERSION = "1"


class WebhookChannel(Channel):
    type = "webhook"
    default_rate_limit = 0.0

    def secrets(self) -> list[str]:
        # Custom headers are nearly always credentials (Authorization, X-Api-Key).
        headers = self.options.get("headers") or {}
        return [*super().secrets(), *(str(v) for v in headers.values() if len(str(v)) >= 4)]

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
        headers = {str(k): str(v) for k, v in dict(self.options.get("headers") or {}).items()}
        return Outgoing("POST", str(self.options["url"]), body, headers)
