"""Statuspage: create the public incident on first firing, then PATCH it; components follow it.

Storm summaries are not posted: a public incident about "N incidents" would name nothing a
customer uses and nothing would ever resolve it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from incident_cli.notify.channels.base import (
    Channel,
    Message,
    Outgoing,
    TransportError,
    clip,
    facts_of,
    one_line,
)
from incident_cli.notify.channels.options import EnvDefaults, Options, host_of, mapping, text, url

if TYPE_CHECKING:
    from incident_cli.http import Reply

COMPONENT_STATUS = {
    "critical": "major_outage",
    "error": "partial_outage",
    "warning": "degraded_performance",
    "info": "degraded_performance",
}
DEFAULT_NAME_TEMPLATE = "{name}"  # the component's name, or the rule's when none is mapped
NAME_FIELDS = ("rule", "component", "name", "severity")  # what name_template may use
IMPACT = {"critical": "critical", "error": "major", "warning": "minor", "info": "none"}
BODIES = {
    "FIRING": "We are investigating this issue.",
    "REOPENED": "The issue has returned; we are investigating.",
    "FLAPPING": "The issue comes and goes; we continue to investigate.",
    "ESCALATED": "We are investigating this issue.",
    "ACKNOWLEDGED": "The issue has been identified and is being worked on.",
    "RESOLVED": "This issue has been resolved.",
}


API_URL = "https://api.statuspage.io/v1"


@dataclass(frozen=True)
class StatuspageOptions(Options):
    ENV = EnvDefaults(
        when=("STATUSPAGE_API_KEY", "STATUSPAGE_PAGE_ID"),
        yaml={"api_key": "${STATUSPAGE_API_KEY}", "page_id": "${STATUSPAGE_PAGE_ID}"},
    )
    posts_storms = False  # a public incident about "N incidents" names nothing a customer uses
    posts_notices = False

    page_id: str | None = text(required=True)
    api_key: str | None = text(secret=True, required=True)
    api_url: str | None = url(fallback=API_URL)
    components: Mapping[str, str] = mapping()
    component_label: str | None = text(fallback="service")
    name_template: str | None = text()

    def completed(self) -> StatuspageOptions:
        return dataclasses.replace(self, api_url=(self.api_url or API_URL).rstrip("/"))

    def problem(self) -> tuple[str | None, str] | None:
        from string import Formatter

        if self.name_template is None:
            return None
        try:
            fields = [f for _, f, _, _ in Formatter().parse(self.name_template) if f is not None]
        except ValueError as exc:
            return "name_template", f"bad template: {exc}"
        for name in fields:
            if name not in NAME_FIELDS:
                known = ", ".join(NAME_FIELDS)
                return "name_template", f"unknown field {{{name}}} (known: {known})"
        return None

    def shown(self) -> dict[str, Any]:
        out = super().shown()
        out["name_template"] = self.name_template or DEFAULT_NAME_TEMPLATE  # what it uses
        return out

    def endpoint(self) -> str:
        return f"{host_of(self.api_url)} page {self.page_id}"


class StatuspageChannel(Channel[StatuspageOptions]):
    type = "statuspage"
    options_type = StatuspageOptions
    default_rate_limit = 1.0  # Statuspage allows one request a second per API key

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"OAuth {self.options.api_key}"}

    def _base(self) -> str:
        page = quote(str(self.options.page_id), safe="")
        return f"{self.options.api_url}/pages/{page}/incidents"

    def _component(self, message: Message) -> str | None:
        """The `components` key the incident's `component_label` value matches: a name the
        config lists, so it may go on the public page."""
        labels = (message.facts.get("incident") or {}).get("labels") or {}
        value = labels.get(self.options.component_label or "service")
        mapping = self.options.components or {}
        return str(value) if value is not None and value in mapping else None

    def components(self, message: Message) -> list[str]:
        """Component ids mapped from the incident's `component_label` value."""
        component = self._component(message)
        return [str(self.options.components[component])] if component is not None else []

    def incident_name(self, message: Message) -> str:
        """The public incident's name, from `name_template`: the rule's name, the component's
        and the severity only, never raw label text (a public page is no place for it)."""
        incident = message.facts.get("incident") or {}
        rule = str(incident.get("rule") or "incident")
        component = self._component(message) or ""
        values = {
            "rule": rule,
            "component": component,
            "name": component or rule,
            "severity": str(incident.get("severity") or "warning"),
        }
        template = str(self.options.name_template or DEFAULT_NAME_TEMPLATE)
        return clip(one_line(template.format_map(values)), 255) or rule

    def prepare(self, message: Message) -> Outgoing | None:
        if message.event == "storm" or message.facts.get("storm_id"):
            return None  # a public incident nobody would resolve helps no one
        if message.event in ("approval", "breaker"):
            return None  # the tool's own business, not the public's
        facts = facts_of(message)
        components = self.components(message)
        if facts.status == "RESOLVED":
            status, component_status = "resolved", "operational"
        elif facts.status == "ACKNOWLEDGED":
            status, component_status = (
                "identified",
                COMPONENT_STATUS.get(facts.severity, "degraded_performance"),
            )
        else:
            status, component_status = (
                "investigating",
                COMPONENT_STATUS.get(facts.severity, "degraded_performance"),
            )
        incident: dict[str, Any] = {
            "status": status,
            "body": BODIES.get(facts.status, BODIES["FIRING"]),
        }
        if components:
            incident["component_ids"] = components
            incident["components"] = dict.fromkeys(components, component_status)
        if message.remote_id is None:
            if message.event not in ("firing", "escalation"):
                raise TransportError(
                    "statuspage: no Statuspage incident to update"
                    " (its firing message was never delivered)",
                    permanent=True,
                )
            incident["name"] = self.incident_name(message)
            incident["impact_override"] = IMPACT.get(facts.severity, "minor")
            return Outgoing("POST", self._base(), {"incident": incident}, self._headers())
        url = f"{self._base()}/{quote(message.remote_id, safe='')}"
        return Outgoing("PATCH", url, {"incident": incident}, self._headers())

    def remote_id(self, message: Message, response: Reply) -> str | None:
        if message.remote_id is not None:
            return message.remote_id
        body = response.json()
        remote = body.get("id") if isinstance(body, dict) else None
        if not isinstance(remote, str) or not remote:
            # Created, but we cannot update it later: say so rather than retry (a retry would
            # create a second public incident).
            raise TransportError(
                "statuspage: created an incident but the answer had no id", permanent=True
            )
        return remote[:200]
