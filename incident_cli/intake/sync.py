"""`incident sync`: acks and resolves made in PagerDuty flow back, read with no transaction
open and applied through the same lifecycle functions as `incident ack` / `incident resolve`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from incident_cli.config.model import ChannelConfig, Config
from incident_cli.errors import IncidentError
from incident_cli.runtime import TickRuntime
from incident_cli.store import sync as sync_store
from incident_cli.store.database import Database, write_tx


@dataclass
class SyncResult:
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


def syncing_channels(config: Config) -> list[ChannelConfig]:
    """The channels whose acks and resolves are read back."""
    return [
        c
        for c in config.channels.values()
        if c.enabled and c.type == "pagerduty" and getattr(c.options, "sync", False)
    ]


def sync_once(
    db: Database, config: Config, now: float, *, runtime: TickRuntime | None = None
) -> SyncResult:
    result = SyncResult()
    for channel in syncing_channels(config):
        _sync_pagerduty(db, config, channel, now, runtime, result)
    return result


def _sync_pagerduty(
    db: Database,
    config: Config,
    channel: ChannelConfig,
    now: float,
    runtime: TickRuntime | None,
    result: SyncResult,
) -> None:
    from incident_cli.lifecycle.manual import acknowledge, resolve_by_hand
    from incident_cli.notify.channels.base import TransportError
    from incident_cli.notify.channels.pagerduty import (
        PagerDutyOptions,
        incident_dedup_key,
        read_state,
    )

    options = channel.options
    assert isinstance(options, PagerDutyOptions)
    waiting = sync_store.not_before(db, channel.name)
    if waiting is not None and waiting > now:
        result.notes.append(
            f"channel {channel.name}: rate limited, next read in {waiting - now:.0f}s"
        )
        return
    error: str | None = None
    pause: float | None = None
    for incident in sync_store.unresolved_sent_to(db, channel.name):
        if runtime is not None and runtime.expired:
            runtime.leave(f"sync of channel {channel.name}")
            break
        timeout = runtime.within(channel.timeout) if runtime is not None else channel.timeout
        try:
            state = read_state(options, incident_dedup_key(incident.id, incident.key), timeout)
        except TransportError as exc:
            error = exc.message
            pause = now + exc.retry_after if exc.retry_after is not None else None
            break  # the API is down or asked us to wait: the other incidents can wait too
        result.checked += 1
        if state is None or state.status == "triggered":
            continue
        by = f"pagerduty:{state.by or 'unknown'}"
        try:
            if state.status == "acknowledged" and incident.status == "open":
                acknowledge(db, config, incident.id, by, None, now)
                result.acknowledged.append(incident.id)
            elif state.status == "resolved":
                note = f"resolved in PagerDuty (channel {channel.name})"
                resolve_by_hand(db, config, incident.id, by, note, False, now)
                result.resolved.append(incident.id)
        except IncidentError:
            continue  # changed here meanwhile (a tick or a person): ours stands
    if error is not None:
        result.errors.append(f"channel {channel.name}: cannot read PagerDuty incidents: {error}")
    with write_tx(db):
        sync_store.record(db, channel.name, pause, error)
