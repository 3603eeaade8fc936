"""`decide_action`: the one decision about a due action — what would run, or what stops it
(its incident, the config, a gate, a refusal, its attempt budget, an approval gate, the
blast-radius breaker). It reads and never writes, so `recover` applies it, `recover --dry-run`
shows it, and a simulated tick can call it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from incident_cli.handlers.planning import ACTION_KINDS, PlanGone, gate_reason, replan
from incident_cli.models import Incident
from incident_cli.recovery.approval import needs_approval
from incident_cli.recovery.breaker import FIX_KINDS, stop_reason
from incident_cli.recovery.context import TickContext, plan_ref
from incident_cli.recovery.kinds.base import Decision, Due
from incident_cli.recovery.kinds.registry import KINDS


def decide_action(
    ctx: TickContext, row: Mapping[str, Any], incident: Incident, at: float
) -> Decision:
    """What to do with a due action row of `incident` at `at`. Reads only; the caller writes.

    What runs comes from the config, planned again now: the row only says which plan. In
    order: the kind is known, the incident unresolved, the plan still there, the operator's
    gates on, then the kind's own checks (refusals, `max_blocks_per_tick`, the attempt
    budget); a command or block_ip that would run then passes the approval gate (commands
    only) and the breaker. `ctx.starting` counts the fixes this tick is yet to start beyond
    those the DB shows (a dry run starts none but counts them)."""
    kind = row["kind"]
    handler = KINDS.get(kind)
    if kind not in ACTION_KINDS or handler is None:
        return Decision("refuse", f"unknown action kind {kind!r}")
    if incident.status == "resolved":
        return Decision("skip", "incident resolved")
    try:
        params = replan(ctx.db, ctx.config, incident, kind, plan_ref(row))
    except PlanGone as exc:
        return Decision("refuse", str(exc))
    gate = gate_reason(ctx.config, kind, params)
    if gate is not None:
        return Decision("skip", gate)
    decision = handler.prepare(ctx, Due(row, incident, at), params)
    if decision.verdict != "run" or kind not in FIX_KINDS:
        return decision
    if needs_approval(ctx.config, row, incident):
        return Decision("approval", "its rule requires approval", decision.job)
    stop = stop_reason(ctx.db, ctx.config, at, 1 + ctx.starting)
    if stop is not None:
        return Decision("breaker", stop, decision.job)
    return decision
