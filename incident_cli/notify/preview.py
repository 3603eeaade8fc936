"""`notify --dry-run`: every pending row rendered as its channel would send it, sending nothing."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from incident_cli.config.model import Config
from incident_cli.models import OutboxRow
from incident_cli.notify.channels.base import Channel, Message, TransportError
from incident_cli.notify.channels.options import Options
from incident_cli.notify.channels.registry import build
from incident_cli.notify.outbox import pending_rows
from incident_cli.redact import redact
from incident_cli.store import outbox as store
from incident_cli.store.database import Database


@dataclass(frozen=True)
class Preview:
    """What `notify --dry-run` shows for one pending row, secrets masked."""

    id: int
    channel: str
    event: str
    incident_id: int | None
    due: bool
    method: str | None
    url: str | None
    headers: dict[str, str]
    body: Any
    note: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "channel": self.channel,
            "event": self.event,
            "incident_id": self.incident_id,
            "due": self.due,
            "method": self.method,
            "url": self.url,
            "headers": self.headers,
            "body": self.body,
            "note": self.note,
        }


def _mask_url(url: str, secrets: list[str]) -> str:
    """A URL that is itself a secret (a Slack webhook) shows its host, not its path."""
    masked = redact(url, secrets)
    if masked == url or "://" not in url:
        return masked
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return masked
    if not host or redact(host, secrets) != host:
        return masked
    return f"{parts.scheme}://{host}{port}/***"


def _mask(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {redact(str(k), secrets): _mask(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask(v, secrets) for v in value]
    return value


def preview_pending(
    db: Database, config: Config, now: float, only_channel: str | None = None
) -> list[Preview]:
    """Every pending row rendered as its channel would send it. Reads only; sends nothing."""
    out: list[Preview] = []
    built: dict[str, Channel[Options]] = {}
    refs = store.refs(db)
    all_secrets = config.secrets()
    queued_before: set[tuple[int | None, str]] = set()
    for row in pending_rows(db, only_channel):
        due = row.next_attempt_at <= now and (row.lease_until is None or row.lease_until < now)

        def preview(
            note: str | None,
            method: str | None = None,
            url: str | None = None,
            headers: dict[str, str] | None = None,
            body: Any = None,
            row: OutboxRow = row,
            due: bool = due,
        ) -> Preview:
            return Preview(
                row.id,
                row.channel,
                row.event,
                row.incident_id,
                due,
                method,
                url,
                headers or {},
                body,
                note,
            )

        channel_config = config.channels.get(row.channel)
        if channel_config is None:
            out.append(preview("not in the config"))
            continue
        if not channel_config.enabled:
            out.append(preview(f"disabled ({channel_config.disabled_reason})"))
            continue
        if row.channel not in built:
            built[row.channel] = build(channel_config)
        channel = built[row.channel]
        secrets = [*all_secrets, *channel.secrets()]
        chain_key = (row.incident_id, row.channel)
        remote = refs.get(chain_key)
        if remote is None and row.incident_id is not None and chain_key in queued_before:
            remote = "ID-FROM-AN-EARLIER-MESSAGE"  # e.g. the Statuspage incident it creates
        queued_before.add(chain_key)
        try:
            facts = json.loads(row.message)
            message = Message(
                id=row.id,
                channel=row.channel,
                event=row.event,
                facts=facts,
                incident_id=row.incident_id,
                remote_id=remote,
            )
            outgoing = channel.prepare(message)
        except (ValueError, AttributeError):
            out.append(preview("the queued message cannot be read"))
            continue
        except TransportError as exc:
            out.append(preview(redact(exc.message, secrets)))
            continue
        if outgoing is None:
            out.append(preview(f"{channel.type} sends nothing for {row.event} messages"))
            continue
        out.append(
            preview(
                None if due else "not due yet",
                outgoing.method,
                _mask_url(outgoing.url, secrets),
                {k: redact(v, secrets) for k, v in outgoing.headers.items()},
                _mask(outgoing.body, secrets),
            )
        )
    return out
