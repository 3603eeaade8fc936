"""Attempt budgets per (rule, target): how many attempts were used within `cooldown`, the
retry after a doubling backoff, and the one escalation when the budget is spent.

The attempts are counted from the action rows, so a budget survives restarts."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from incident_cli.handlers.planning import PLAN_REF, PlanGone, mask_params, replan
from incident_cli.models import Incident
from incident_cli.recovery.context import TickContext, loads, number, plan_ref
from incident_cli.store import actions, timeline
from incident_cli.store.database import Database
from incident_cli.store.timeline import add_event
from incident_cli.times import format_duration


def budget_escalated_at(
    db: Database, incident_id: int, budget_key: str, since: float
) -> float | None:
    """When the incident last escalated for this spent budget, if that was at or after
    `since` (the start of the budget's cooldown window). A reopen clears `escalated_at`, but
    while the same budget stays spent the incident has already been escalated for it."""
    return timeline.last_budget_escalation(db, incident_id, budget_key, since)


def attempts_used(db: Database, key: str | None, since: float) -> int:
    if not key:
        return 0
    return actions.attempts_used(db, key, since)


def budget_limits(params: Mapping[str, Any]) -> tuple[int, float, float]:
    """(max_attempts, cooldown, backoff) of a planned fix, with their defaults."""
    return (
        int(number(params, "max_attempts", 3)),
        number(params, "cooldown", 3600.0),
        number(params, "backoff", 30.0),
    )


def after_failure(ctx: TickContext, row: Mapping[str, Any], incident: Incident, at: float) -> None:
    """A fix attempt failed: plan the next attempt after a doubling backoff, or escalate
    once when the budget of its (rule, target) is spent. The caller holds the transaction."""
    if incident.status == "resolved":
        return
    try:
        params = replan(ctx.db, ctx.config, incident, row["kind"], plan_ref(row))
    except PlanGone:
        params = loads(row["params"])  # only its budget numbers are read here
    max_attempts, cooldown, backoff = budget_limits(params)
    attempt = int(row["attempts"])
    used = attempts_used(ctx.db, row["budget_key"], at - cooldown)
    if attempt >= max_attempts or used >= max_attempts:
        reason = (
            f"recovery failed {attempt} time{'s' if attempt != 1 else ''}"
            f" ({used} attempt{'s' if used != 1 else ''} within"
            f" {format_duration(cooldown)}, max_attempts {max_attempts})"
        )
        key = row["budget_key"]
        if budget_escalated_at(ctx.db, incident.id, key, at - cooldown) is None:
            ctx.escalate(incident, at, reason, key)
        return
    delay = backoff * 2 ** (attempt - 1)
    # The retry refers to the same plan; what it runs is planned again when it is due.
    stored = mask_params({**params, PLAN_REF: plan_ref(row)}, ctx.secrets)
    template = stored.get("template")
    retry_id = actions.insert_retry(
        ctx.db,
        row["incident_id"],
        row["kind"],
        attempt,
        json.dumps(template, ensure_ascii=False)
        if template
        else ctx.mask(row["command"] or "") or None,
        json.dumps(stored, default=str),
        row["target"],
        row["budget_key"],
        at,
        at + delay,
    )
    add_event(
        ctx.db,
        incident.id,
        at,
        "action_planned",
        f"planned retry {attempt + 1} of {max_attempts} in {format_duration(delay)}",
        data={"action_id": retry_id, "kind": row["kind"], "attempt": attempt + 1},
    )
