"""Slack through an incoming webhook: one attachment an on-call engineer can act on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from incident_cli.notify.channels.base import (
    ACKNOWLEDGED_COLOUR,
    RESOLVED_COLOUR,
    SEVERITY_COLOURS,
    Channel,
    Message,
    Outgoing,
    clip,
    facts_of,
    one_line,
)
from incident_cli.notify.channels.options import EnvDefaults, Options, host_of, text, url

MAX_LABELS = 20


def escape(text: str) -> str:
    """Slack's three control characters; a label value cannot mention @channel or fake a link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def link(url: str, text: str) -> str:
    return f"<{escape(url).replace('|', '%7C')}|{escape(text)}>"


@dataclass(frozen=True)
class SlackOptions(Options):
    ENV = EnvDefaults(when=("SLACK_WEBHOOK_URL",), yaml={"webhook_url": "${SLACK_WEBHOOK_URL}"})

    webhook_url: str | None = url(secret=True, required=True)
    channel: str | None = text()
    username: str | None = text()

    def endpoint(self) -> str:
        return host_of(self.webhook_url)


class SlackChannel(Channel[SlackOptions]):
    type = "slack"
    options_type = SlackOptions
    default_rate_limit = 1.0  # Slack allows about one message a second per webhook

    def prepare(self, message: Message) -> Outgoing:
        facts = facts_of(message)
        if facts.status == "RESOLVED":
            colour = RESOLVED_COLOUR
        elif facts.status == "ACKNOWLEDGED":
            colour = ACKNOWLEDGED_COLOUR
        else:
            colour = SEVERITY_COLOURS.get(facts.severity, SEVERITY_COLOURS["warning"])
        headline = f"[{facts.status}] {one_line(facts.title)}"
        if facts.incident_id is not None:
            headline += f" (incident {facts.incident_id})"
        fields: list[dict[str, Any]] = [
            {"title": "Severity", "value": facts.severity, "short": True},
        ]
        if facts.incident_id is not None:
            fields.append({"title": "Incident", "value": str(facts.incident_id), "short": True})
        if facts.labels:
            shown = sorted(facts.labels.items())[:MAX_LABELS]
            text = "\n".join(
                f"{escape(clip(one_line(k), 100))}={escape(clip(one_line(v), 200))}"
                for k, v in shown
            )
            if len(facts.labels) > MAX_LABELS:
                text += f"\n… and {len(facts.labels) - MAX_LABELS} more"
            fields.append({"title": "Labels", "value": text, "short": False})
        links = []
        if facts.runbook:
            links.append(link(facts.runbook, "Runbook"))
        if facts.grafana:
            links.append(link(facts.grafana, "Grafana"))
        if links:
            fields.append({"title": "Links", "value": " · ".join(links), "short": False})
        if facts.ack_command:
            fields.append(
                {"title": "Acknowledge", "value": f"`{facts.ack_command}`", "short": False}
            )
        body_lines = [escape(clip(facts.summary, 2000))] if facts.summary else []
        body_lines.extend(escape(note) for note in facts.notes)
        attachment: dict[str, Any] = {
            "fallback": escape(clip(headline, 300)),
            "color": colour,
            "title": escape(clip(headline, 300)),
            "text": "\n".join(body_lines),
            "fields": fields,
            "footer": "incident",
            "mrkdwn_in": ["text", "fields"],
        }
        body: dict[str, Any] = {"text": escape(clip(headline, 300)), "attachments": [attachment]}
        if self.options.channel:
            body["channel"] = self.options.channel
        if self.options.username:
            body["username"] = self.options.username
        return Outgoing("POST", str(self.options.webhook_url), body)
