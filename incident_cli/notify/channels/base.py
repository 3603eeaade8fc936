"""The base every channel builds on: Message, TransportError, sending through http,
shared facts."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from incident_cli.notify.channels.options import Options
from incident_cli.redact import redact

if TYPE_CHECKING:
    import requests

    from incident_cli.http import Reply

OptionsT = TypeVar("OptionsT", bound=Options)
OptionsClass = type[Options]

MAX_RESPONSE_BYTES = 64 * 1024


class TransportError(Exception):
    """A send that did not go through. `permanent`: retrying cannot help (dead letter).

    `retry_after` is what the endpoint asked for (429), in seconds. The message never holds a
    URL or a credential.
    """

    def __init__(
        self, message: str, *, permanent: bool = False, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.retry_after = retry_after


@dataclass(frozen=True)
class Message:
    """One outbox row as a channel sees it: the queued facts plus what the channel kept before."""

    id: int
    channel: str
    event: str
    facts: Mapping[str, Any]
    incident_id: int | None = None
    remote_id: str | None = None  # e.g. the Statuspage incident created by an earlier message


@dataclass(frozen=True)
class Outgoing:
    """What a channel would send: for HTTP a method, URL, headers and JSON body."""

    method: str
    url: str
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)


class Channel(Generic[OptionsT]):
    """A notification channel: `prepare` builds the request (no I/O), `send` delivers it.

    `send` returns a remote id to keep for this incident and channel (or None), and raises
    TransportError on failure.
    """

    type: ClassVar[str] = ""
    options_type: ClassVar[OptionsClass] = Options
    # Messages per second when the config says nothing; 0 is unlimited.
    default_rate_limit: ClassVar[float] = 0.0

    def __init__(
        self,
        name: str,
        options: OptionsT,
        *,
        timeout: float,
        rate_limit: float | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self.name = name
        self.options = options
        self.timeout = timeout
        self._rate_limit = rate_limit
        self.session = session

    @property
    def rate_limit(self) -> float:
        return self.default_rate_limit if self._rate_limit is None else self._rate_limit

    def secrets(self) -> list[str]:
        """Every value that must never be printed or stored.

        A secret URL (a Slack webhook) also hides its path and query, and their long parts:
        an endpoint's error page may echo the path without the host.
        """
        values = self.options.secrets()
        for value in list(values):
            values.extend(url_parts(value))
        return values

    def prepare(self, message: Message) -> Outgoing | None:
        """The request for this message, or None when this channel has nothing to say."""
        raise NotImplementedError

    def send(self, message: Message, *, within: float | None = None) -> str | None:
        """Deliver within `within` seconds (at most the channel's timeout)."""
        outgoing = self.prepare(message)
        if outgoing is None:
            return message.remote_id
        response = self.request(outgoing, within=within)
        return self.remote_id(message, response)

    def time_limit(self, within: float | None) -> float:
        return self.timeout if within is None else min(within, self.timeout)

    def remote_id(self, message: Message, response: Reply) -> str | None:
        return None

    # ---------------------------------------------------------------- HTTP

    def request(self, outgoing: Outgoing, *, within: float | None = None) -> Reply:
        """Send, all of it within the channel's timeout (or `within`, when shorter); 2xx
        returns, anything else raises TransportError."""
        from incident_cli.http import HTTPFailure, exchange

        what = self.type
        try:
            reply = exchange(
                outgoing.method,
                outgoing.url,
                timeout=self.time_limit(within),
                session=self.session,
                json_body=outgoing.body,
                headers=outgoing.headers,
                body_limit=MAX_RESPONSE_BYTES,
            )
        except HTTPFailure as exc:
            raise TransportError(f"{what}: {exc.reason}") from None
        status = reply.status
        if reply.ok:
            return reply
        detail = _short_body(reply.body, self.secrets())
        text = f"{what} answered HTTP {status}" + (f": {detail}" if detail else "")
        if status == 429:
            raise TransportError(text, retry_after=reply.retry_after)
        if status >= 500 or status == 408:
            raise TransportError(text)
        if 300 <= status < 400:
            text += " (redirects are not followed)"
        raise TransportError(text, permanent=True)


def _short_body(body: bytes | bytearray, secrets: list[str]) -> str:
    """The start of an error body on one line, masked before it is cut (no half secrets)."""
    text = body[:4000].decode("utf-8", "replace")
    if text.lstrip().startswith("<"):
        return ""  # an HTML error page says nothing the status code does not
    return clip(redact(" ".join(text.split()), secrets), 200)


def url_parts(value: str) -> list[str]:
    """The parts of a secret URL that could be echoed on their own: path, query, long pieces."""
    if "://" not in value:
        return []
    from urllib.parse import parse_qsl, urlsplit

    try:
        parts = urlsplit(value)
    except ValueError:
        return []
    found = [parts.path, f"{parts.path}?{parts.query}" if parts.query else ""]
    found.extend(parts.path.split("/"))
    found.extend(v for _, v in parse_qsl(parts.query))
    if parts.password:
        found.append(parts.password)
    return [p for p in found if len(p) >= 10]


# -------------------------------------------------------------------- facts every channel shows


@dataclass(frozen=True)
class Facts:
    """What a queued message says, in the words every channel uses."""

    status: str  # FIRING, REOPENED, FLAPPING, ACKNOWLEDGED, RESOLVED, ESCALATED, STORM, HELD
    title: str
    severity: str
    incident_id: int | None
    summary: str
    labels: Mapping[str, str]
    runbook: str | None
    grafana: str | None
    ack_command: str | None
    notes: tuple[str, ...]


LINK_KEYS = ("runbook", "grafana")  # the facts that are links a human may click


def link_url(value: object) -> str | None:
    """The URL when it is an absolute http(s) URL with a host, else None: a `javascript:`,
    `data:` or `file:` runbook (an annotation is the source's text) is never forwarded."""
    if not isinstance(value, str) or not value or len(value) > 2048:
        return None
    if re.search(r"[\x00-\x20\x7f-\x9f]", value):
        return None
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return value


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def one_line(text: str) -> str:
    """Control characters and line breaks collapsed: safe in a subject or a title."""
    return " ".join(re.sub(r"[\x00-\x1f\x7f\u2028\u2029]", " ", text).split())


def facts_of(message: Message) -> Facts:
    f = message.facts
    if message.event == "resolved" and f.get("storm_id"):
        count = int(f.get("count", 0))
        return Facts(
            status="RESOLVED",
            title=f"alert storm over: all {count} incidents resolved",
            severity=_worst(dict(f.get("by_severity", {}))),
            incident_id=None,
            summary="Every incident of the storm summary has resolved.",
            labels={},
            runbook=None,
            grafana=link_url(f.get("grafana")),
            ack_command=None,
            notes=(),
        )
    if message.event == "breaker":
        return _breaker_facts(f)
    if message.event == "mass_resolve":
        return _mass_resolve_facts(f)
    if message.event == "storm":
        count = int(f.get("count", 0))
        top = _top_alerts(f)
        by_severity = ", ".join(f"{k} {v}" for k, v in dict(f.get("by_severity", {})).items())
        severity = _worst(dict(f.get("by_severity", {})))
        return Facts(
            status="STORM",
            title=f"{count} incidents opened at once",
            severity=severity,
            incident_id=None,
            summary=f"Top alerts: {top}."
            + (f" By severity: {by_severity}." if by_severity else ""),
            labels={},
            runbook=None,
            grafana=link_url(f.get("grafana")),
            ack_command=None,
            notes=(
                "One summary instead of one message per incident.",
                f"See them with: {f.get('hint') or 'incident list --status open'}",
            ),
        )
    incident = f.get("incident") or {}
    annotations = incident.get("annotations") or {}
    summary = annotations.get("summary") or annotations.get("description") or ""
    notes: list[str] = []
    status = {
        "firing": "FIRING",
        "acknowledged": "ACKNOWLEDGED",
        "resolved": "RESOLVED",
        "escalation": "ESCALATED",
    }.get(message.event, message.event.upper())
    if message.event == "firing" and f.get("flapping"):
        status = "FLAPPING"
        notes.append(
            "Flapping started: it keeps resolving and firing again; "
            "further changes are held until it settles."
        )
    elif message.event == "firing" and f.get("reopened"):
        status = "REOPENED"
        notes.append(f"Fired again soon after resolving (reopen #{incident.get('reopen_count')}).")
    elif f.get("note") == "flapping stopped":
        notes.append("Flapping stopped: this is its state now.")
    elif f.get("note"):
        notes.append(str(f["note"]))
    if message.event == "acknowledged" and f.get("by"):
        notes.append(f"Acknowledged by {f['by']}.")
    if message.event == "resolved" and incident.get("resolution"):
        notes.append(f"Resolution: {incident['resolution'].replace('_', ' ')}.")
    if message.event == "escalation" and f.get("reason"):
        notes.append(f"Escalated: {f['reason']}")
    if message.event == "approval":
        status = "APPROVAL NEEDED"
        notes.extend(_approval_notes(f))
    return Facts(
        status=status,
        title=str(incident.get("title") or "incident"),
        severity=str(incident.get("severity") or "warning"),
        incident_id=incident.get("id"),
        summary=str(summary),
        labels={str(k): str(v) for k, v in dict(incident.get("labels") or {}).items()},
        runbook=link_url(f.get("runbook")),
        grafana=link_url(f.get("grafana")),
        ack_command=f.get("ack_command")
        if message.event not in ("resolved", "acknowledged", "approval")
        else None,
        notes=tuple(notes),
    )


def _approval_notes(f: Mapping[str, Any]) -> list[str]:
    """A command waiting for a human: what it runs, and how to approve or deny it."""
    argv = " ; ".join(" ".join(str(a) for a in step) for step in f.get("argv") or [])
    return [
        f"Recovery action {f.get('action_id')} waits for approval: {argv}",
        f"Approve: {f.get('approve_command')}",
        f"Deny: {f.get('deny_command')}",
        f"Expires at {f.get('expires_at')}; then the incident escalates.",
    ]


def _breaker_facts(f: Mapping[str, Any]) -> Facts:
    return Facts(
        status="BREAKER OPEN",
        title="recovery breaker open: no command or block_ip action starts",
        severity="critical",
        incident_id=None,
        summary=str(f.get("reason") or ""),
        labels={},
        runbook=None,
        grafana=link_url(f.get("grafana")),
        ack_command=None,
        notes=(
            "Due command and block_ip actions stay pending until it closes.",
            f"Close it with: {f.get('reset_command') or 'incident breaker reset'}",
        ),
    )


def _top_alerts(f: Mapping[str, Any]) -> str:
    return ", ".join(
        f"{a.get('alertname', '?')} x{a.get('incidents', 0)}" for a in f.get("top_alerts", [])
    )


def _mass_resolve_facts(f: Mapping[str, Any]) -> Facts:
    top = _top_alerts(f)
    return Facts(
        status="HELD",
        title=f"{int(f.get('held', 0))} of {int(f.get('open', 0))} open incidents cleared"
        " at once: not resolving them yet",
        severity=_worst(dict(f.get("by_severity", {}))),
        incident_id=None,
        summary=f"Their alerts vanished in one poll (a restarted Prometheus, a broken rule"
        f" file?). Alerts: {top}.",
        labels={},
        runbook=None,
        grafana=link_url(f.get("grafana")),
        ack_command=None,
        notes=(
            f"Held until {f.get('held_until')}: those whose alerts return stay open, the"
            " others resolve then.",
            f"See them with: {f.get('hint') or 'incident list --status open'}",
        ),
    )


def _worst(by_severity: Mapping[str, Any]) -> str:
    for severity in ("critical", "error", "warning", "info"):
        if by_severity.get(severity):
            return severity
    return "warning"


def plain_text(facts: Facts, *, value_limit: int = 300) -> str:
    """The facts as plain text lines (email body, webhook summary)."""
    lines = [f"[{facts.status}] {one_line(facts.title)}", f"Severity: {facts.severity}"]
    if facts.incident_id is not None:
        lines.append(f"Incident: {facts.incident_id}")
    if facts.summary:
        lines.append(f"Summary: {clip(facts.summary, 2000)}")
    lines.extend(facts.notes)
    if facts.labels:
        lines.append("Labels:")
        lines.extend(
            f"  {clip(one_line(k), 100)}={clip(one_line(v), value_limit)}"
            for k, v in sorted(facts.labels.items())
        )
    if facts.runbook:
        lines.append(f"Runbook: {facts.runbook}")
    if facts.grafana:
        lines.append(f"Grafana: {facts.grafana}")
    if facts.ack_command:
        lines.append(f"Acknowledge: {facts.ack_command}")
    return "\n".join(lines)


SEVERITY_COLOURS = {
    "critical": "#d40e0d",
    "error": "#e8590c",
    "warning": "#f2c744",
    "info": "#439fe0",
}
RESOLVED_COLOUR = "#2eb886"
ACKNOWLEDGED_COLOUR = "#7f8c8d"
