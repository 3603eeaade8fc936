"""Slack: one attachment an on-call engineer can act on, through an incoming webhook or the Web
API (a bot token: the first message is kept, follow-ups go in its thread and recolour it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from incident_cli.notify.channels.base import (
    ACKNOWLEDGED_COLOUR,
    RESOLVED_COLOUR,
    SEVERITY_COLOURS,
    Channel,
    Message,
    Outgoing,
    TransportError,
    clip,
    facts_of,
    one_line,
)
from incident_cli.notify.channels.options import (
    EnvDefaults,
    Options,
    addresses,
    host_of,
    text,
    url,
)

if TYPE_CHECKING:
    from incident_cli.http import Reply

MAX_LABELS = 20
API_URL = "https://slack.com/api"


def escape(text: str) -> str:
    """Slack's three control characters; a label value cannot mention @channel or fake a link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def link(url: str, text: str) -> str:
    return f"<{escape(url).replace('|', '%7C')}|{escape(text)}>"


@dataclass(frozen=True)
class SlackOptions(Options):
    """A Slack channel: an incoming webhook, or the Web API with a bot token."""

    ENV = EnvDefaults(when=("SLACK_WEBHOOK_URL",), yaml={"webhook_url": "${SLACK_WEBHOOK_URL}"})

    webhook_url: str | None = url(secret=True)
    channel: str | None = text()
    username: str | None = text()
    # The Web API instead of a webhook: a bot token with chat:write, `channel` to post in.
    bot_token: str | None = text(secret=True)
    # Whose reactions on our messages count (Slack user IDs); set: reactions are read back.
    allowed_users: tuple[str, ...] = addresses()
    api_url: str | None = url(fallback=API_URL)

    def missing(self) -> list[str]:
        return [] if self.bot_token or self.webhook_url else ["webhook_url"]

    def reads_back(self) -> bool:
        """The reactions of `allowed_users` on the kept messages (the Web API only)."""
        return bool(self.bot_token and self.allowed_users)

    def problem(self) -> tuple[str | None, str] | None:
        if self.bot_token and self.webhook_url:
            return None, "give either webhook_url or bot_token, not both"
        if self.bot_token and not self.channel:
            return "channel", "bot_token needs the channel to post in"
        return None

    def endpoint(self) -> str:
        return host_of(self.api_url if self.bot_token else self.webhook_url)


class SlackChannel(Channel[SlackOptions]):
    type = "slack"
    options_type = SlackOptions
    default_rate_limit = 1.0  # Slack allows about one message a second per webhook

    def prepare(self, message: Message) -> Outgoing:
        if self.options.bot_token:
            return self._web_api(message)
        body = self._body(message)
        if self.options.channel:
            body["channel"] = self.options.channel
        if self.options.username:
            body["username"] = self.options.username
        return Outgoing("POST", str(self.options.webhook_url), body)

    def _body(self, message: Message) -> dict[str, Any]:
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
        return {"text": escape(clip(headline, 300)), "attachments": [attachment]}

    # ------------------------------------------------------------ the Web API

    def _call(self, method: str, body: dict[str, Any]) -> Outgoing:
        headers = {"Authorization": f"Bearer {self.options.bot_token}"}
        return Outgoing("POST", f"{str(self.options.api_url).rstrip('/')}/{method}", body, headers)

    def _web_api(self, message: Message) -> Outgoing:
        """The first message of an incident (chat.postMessage); see `send` for follow-ups."""
        body = self._body(message)
        body["channel"] = self.options.channel
        if self.options.username:
            body["username"] = self.options.username
        return self._call("chat.postMessage", body)

    def send(self, message: Message, *, within: float | None = None) -> str | None:
        if not self.options.bot_token or message.remote_id is None or "/" not in message.remote_id:
            return super().send(message, within=within)
        # A follow-up: the original message recoloured with its new status line (chat.update),
        # then a reply in its thread. The update is first: a retry after a failed reply repeats
        # only what is harmless to repeat.
        channel, ts = message.remote_id.split("/", 1)
        body = self._body(message)
        update = self._call("chat.update", {**body, "channel": channel, "ts": ts})
        updated = self.request(update, within=within)
        if web_error(updated) == "message_not_found":
            # The original was deleted: this message starts a new one, kept from now on.
            return self.remote_id(message, self.request(self._web_api(message), within=within))
        self.check(updated)
        reply = {"channel": channel, "thread_ts": ts, "text": body["text"]}
        self.check(self.request(self._call("chat.postMessage", reply), within=within))
        return message.remote_id

    def remote_id(self, message: Message, response: Reply) -> str | None:
        if not self.options.bot_token:
            return None
        answer = self.check(response)
        channel, ts = answer.get("channel"), answer.get("ts")
        if not isinstance(channel, str) or not isinstance(ts, str) or not channel or not ts:
            raise TransportError(
                "slack: posted, but the answer had no channel and ts", permanent=True
            )
        return f"{channel[:50]}/{ts[:50]}"

    @staticmethod
    def check(response: Reply) -> dict[str, Any]:
        """A Web API answer: `ok: true`, or its error (`ratelimited` is retried after a while)."""
        answer = response.json()
        if not isinstance(answer, dict):
            raise TransportError("slack: the answer is not JSON")
        if answer.get("ok") is True:
            return answer
        error = one_line(str(answer.get("error") or "unknown error"))[:100]
        if error == "ratelimited":
            raise TransportError("slack: ratelimited", retry_after=response.retry_after or 60.0)
        temporary = error in TEMPORARY_ERRORS
        raise TransportError(f"slack: {error}", permanent=not temporary)


# Web API errors a later try may get past; every other one needs a person (bad token, scope).
TEMPORARY_ERRORS = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)


def web_error(response: Reply) -> str | None:
    """The `error` of an `ok: false` Web API answer, else None."""
    answer = response.json()
    if isinstance(answer, dict) and answer.get("ok") is False:
        return str(answer.get("error") or "")
    return None


# --------------------------------------------------------------------------- reading back


def read_reactions(
    options: SlackOptions, remote_id: str, timeout: float
) -> dict[str, tuple[str, ...]] | None:
    """The reactions on one kept message (reactions.get), by name: the users who made them.
    None when the message is gone. Raises TransportError (with retry_after when rate limited)."""
    from incident_cli.http import HTTPFailure, exchange

    channel, _, ts = remote_id.partition("/")
    try:
        reply = exchange(
            "GET",
            f"{str(options.api_url).rstrip('/')}/reactions.get",
            timeout=timeout,
            params={"channel": channel, "timestamp": ts, "full": "true"},
            headers={"Authorization": f"Bearer {options.bot_token}"},
        )
    except HTTPFailure as exc:
        raise TransportError(f"slack: {exc.reason}") from None
    if reply.status == 429:
        raise TransportError("slack: ratelimited", retry_after=reply.retry_after or 60.0)
    if not reply.ok:
        raise TransportError(f"slack: HTTP {reply.status}")
    if web_error(reply) in ("message_not_found", "channel_not_found"):
        return None
    answer = SlackChannel.check(reply)
    message = answer.get("message")
    reactions = message.get("reactions", []) if isinstance(message, dict) else None
    if not isinstance(reactions, list):
        raise TransportError("slack: the answer has no message")
    found: dict[str, tuple[str, ...]] = {}
    for reaction in reactions:
        if isinstance(reaction, dict) and isinstance(reaction.get("name"), str):
            users = reaction.get("users")
            names = [str(u) for u in users if isinstance(u, str)] if isinstance(users, list) else []
            found[reaction["name"]] = tuple(names)
    return found
