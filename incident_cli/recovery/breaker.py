"""The blast-radius breaker (`recovery.breaker`): the global guard above every (rule, target)
budget. It opens when more than `max_actions` command or block_ip actions would have started
within `within`, or more than `max_incidents` unresolved incidents have a fix still planned;
while it is open no command or block_ip starts. It closes by `incident breaker reset` or, with
`auto_reset`, once `within` has passed since it opened and nothing trips it; a close starts a
new window (actions started before it no longer count)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from incident_cli.config.model import BreakerConfig, Config
from incident_cli.notify.outbox import queue_breaker
from incident_cli.store import safety
from incident_cli.store.database import Database, write_tx
from incident_cli.times import format_duration, to_rfc3339

FIX_KINDS = ("command", "block_ip")  # what the breaker counts and holds
RESET_COMMAND = "incident breaker reset --by NAME --note TEXT"


def trip_reason(
    db: Database, breaker: BreakerConfig, state: Mapping[str, Any], at: float, starting: int
) -> str | None:
    """Why the breaker trips at `at` with `starting` more fixes about to start, or None.
    Reads only."""
    since = max(at - breaker.within, float(state["window_start"] or 0.0))
    started = safety.fixes_started_since(db, since)
    if started + starting > breaker.max_actions:
        return (
            f"more than {breaker.max_actions} command/block_ip actions within"
            f" {format_duration(breaker.within)} ({started} started"
            + (f", {starting} more due" if starting else "")
            + ")"
        )
    planned = safety.incidents_with_planned_fixes(db)
    if planned > breaker.max_incidents:
        return (
            f"more than {breaker.max_incidents} incidents with planned fixes open at once"
            f" ({planned})"
        )
    return None


def stop_reason(db: Database, config: Config, at: float, starting: int = 1) -> str | None:
    """Why a command or block_ip may not start now: the breaker is open, or starting it (and
    `starting - 1` more not yet in the DB) would trip it. None: it may start. Reads only (the
    caller opens it)."""
    breaker = config.recovery.breaker
    if breaker is None:
        return None
    state = safety.breaker_state(db)
    if state["opened_at"] is not None:
        return f"recovery breaker open since {to_rfc3339(state['opened_at'])}: {state['reason']}"
    return trip_reason(db, breaker, state, at, starting)


def open_breaker(db: Database, config: Config, at: float, reason: str) -> float:
    """Open it (if it is not open yet) with one `breaker` notification to the escalation
    channels, in the caller's transaction. Returns when it opened."""
    if safety.open_breaker(db, at, reason):
        queue_breaker(
            db,
            config,
            at,
            {"reason": reason, "opened_at": to_rfc3339(at), "reset_command": RESET_COMMAND},
        )
        return at
    return float(safety.breaker_state(db)["opened_at"] or at)


def hold(db: Database, action_id: int, at: float, opened_at: float) -> bool:
    """Mark a due action held; True the first time it is held while the breaker is open."""
    return safety.hold(db, action_id, at, opened_at)


def auto_reset(db: Database, config: Config, now: float) -> bool:
    """With `auto_reset: true`, close it once `within` has passed since it opened and
    nothing trips it now. True when it closed."""
    breaker = config.recovery.breaker
    if breaker is None or not breaker.auto_reset:
        return False
    with write_tx(db):
        state = safety.breaker_state(db)
        opened = state["opened_at"]
        if opened is None or now < float(opened) + breaker.within:
            return False
        if trip_reason(db, breaker, state, now, 0) is not None:
            return False
        return safety.close_breaker(
            db, now, "auto", f"nothing tripped it for {format_duration(breaker.within)}"
        )


def reset(db: Database, now: float, by: str, note: str) -> bool:
    """`incident breaker reset`: close it and start a new window. False when it was closed."""
    with write_tx(db):
        return safety.close_breaker(db, now, by, note)
