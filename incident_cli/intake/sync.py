"""`incident sync`: acks and resolves made in PagerDuty (its status) and Slack (reactions) flow
back, read with no transaction open and applied through the same lifecycle functions as
`incident ack` / `incident resolve`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from incident_cli.config.model import ChannelConfig, Config
from incident_cli.errors import IncidentError
from incident_cli.models import Incident
from incident_cli.runtime import TickRuntime
from incident_cli.store import sync as sync_store
from incident_cli.store.database import Database, write_tx

T = TypeVar("T")


@dataclass
class SyncResult:
    """What one `sync` run read back: incidents checked, acked and resolved elsewhere."""

    checked: int = 0
    acknowledged: list[int] = field(default_factory=list)
    resolved: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # each one makes `sync` exit 75
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "acknowledged": self.acknowledged,
            "resolved": self.resolved,
            "errors": self.errors,
            "notes": self.notes,
        }


def sync_once(
    db: Database, config: Config, now: float, *, runtime: TickRuntime | None = None
) -> SyncResult:
    result = SyncResult()
    for channel in config.syncing_channels():
        if channel.type == "pagerduty":
            _sync_pagerduty(db, config, channel, now, runtime, result)
        else:
            _sync_slack(db, config, channel, now, runtime, result)
    return result


def _each_target(
    db: Database,
    channel: ChannelConfig,
    now: float,
    runtime: TickRuntime | None,
    result: SyncResult,
    targets: list[tuple[Incident, str]],
    read: Callable[[str, float], T],
    apply: Callable[[Incident, T], None],
    what: str,
) -> None:
    """Read each target with no transaction open and apply what it says; stop at the first
    failure (the others wait for the next tick) and keep a 429's Retry-After."""
    from incident_cli.notify.channels.base import TransportError

    waiting = sync_store.not_before(db, channel.name)
    if waiting is not None and waiting > now:
        result.notes.append(
            f"channel {channel.name}: rate limited, next read in {waiting - now:.0f}s"
        )
        return
    error: str | None = None
    pause: float | None = None
    for incident, target in targets:
        if runtime is not None and runtime.expired:
            runtime.leave(f"sync of channel {channel.name}")
            break
        timeout = runtime.within(channel.timeout) if runtime is not None else channel.timeout
        try:
            state = read(target, timeout)
        except TransportError as exc:
            error = exc.message
            pause = now + exc.retry_after if exc.retry_after is not None else None
            break  # the API is down or asked us to wait: the other incidents can wait too
        result.checked += 1
        try:
            apply(incident, state)
        except IncidentError:
            continue  # changed here meanwhile (a tick or a person): ours stands
    if error is not None:
        result.errors.append(f"channel {channel.name}: cannot read {what}: {error}")
    with write_tx(db):
        sync_store.record(db, channel.name, pause, error)


def _sync_pagerduty(
    db: Database,
    config: Config,
    channel: ChannelConfig,
    now: float,
    runtime: TickRuntime | None,
    result: SyncResult,
) -> None:
    from incident_cli.lifecycle.manual import acknowledge, resolve_by_hand
    from incident_cli.notify.channels.pagerduty import (
        PagerDutyOptions,
        RemoteState,
        incident_dedup_key,
        read_state,
    )

    options = channel.options
    assert isinstance(options, PagerDutyOptions)

    def read(key: str, timeout: float) -> RemoteState | None:
        return read_state(options, key, timeout)

    def apply(incident: Incident, state: RemoteState | None) -> None:
        if state is None or state.status == "triggered":
            return
        by = f"pagerduty:{state.by or 'unknown'}"
        if state.status == "acknowledged" and incident.status == "open":
            acknowledge(db, config, incident.id, by, None, now)
            result.acknowledged.append(incident.id)
        elif state.status == "resolved":
            note = f"resolved in PagerDuty (channel {channel.name})"
            resolve_by_hand(db, config, incident.id, by, note, False, now)
            result.resolved.append(incident.id)

    targets = [
        (i, incident_dedup_key(i.id, i.key))
        for i in sync_store.unresolved_sent_to(db, channel.name)
    ]
    _each_target(db, channel, now, runtime, result, targets, read, apply, "PagerDuty incidents")


ACK_REACTION = "eyes"
RESOLVE_REACTION = "white_check_mark"


def _sync_slack(
    db: Database,
    config: Config,
    channel: ChannelConfig,
    now: float,
    runtime: TickRuntime | None,
    result: SyncResult,
) -> None:
    from incident_cli.display import printable
    from incident_cli.lifecycle.manual import acknowledge, note_once, resolve_by_hand
    from incident_cli.notify.channels.slack import SlackOptions, read_reactions

    options = channel.options
    assert isinstance(options, SlackOptions)
    allowed = set(options.allowed_users)

    def read(ref: str, timeout: float) -> dict[str, tuple[str, ...]] | None:
        return read_reactions(options, ref, timeout)

    def apply(incident: Incident, reactions: dict[str, tuple[str, ...]] | None) -> None:
        if reactions is None:
            note = f"its Slack message in channel {channel.name} is gone: reactions not read"
            note_once(db, incident.id, note, "incident", now)
            return
        for name in (RESOLVE_REACTION, ACK_REACTION):
            for user in reactions.get(name, ()):
                who = printable(user)[:50]
                if user not in allowed:
                    note = f"reaction :{name}: by Slack user {who} ignored: not in allowed_users"
                    note_once(db, incident.id, note, f"slack:{who}", now)
                    continue
                if name == RESOLVE_REACTION:
                    resolve_by_hand(db, config, incident.id, f"slack:{who}", None, False, now)
                    result.resolved.append(incident.id)
                    return
                if incident.status == "open":
                    acknowledge(db, config, incident.id, f"slack:{who}", None, now)
                    result.acknowledged.append(incident.id)
                    return

    targets = sync_store.unresolved_with_ref(db, channel.name)
    _each_target(db, channel, now, runtime, result, targets, read, apply, "Slack reactions")
