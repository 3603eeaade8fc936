"""`command`: a fix. Its argv from the rule (labels substituted, no shell); its attempt budget
per (rule, target); after exit 0, verification (health URL or the alerts clearing) or fixed at
once; after a failure, a retry after a doubling backoff or, with the budget spent, one
escalation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from incident_cli.lifecycle.changes import mark_fixed
from incident_cli.recovery.attempts import (
    after_failure,
    attempts_used,
    budget_escalated_at,
    budget_limits,
)
from incident_cli.recovery.context import MAX_STORED_OUTPUT, TickContext, display_url, number
from incident_cli.recovery.kinds.base import Decision, Due, Job, Outcome
from incident_cli.recovery.kinds.steps import (
    command_timeout,
    first_failure,
    record_failed,
    record_succeeded,
    run_decision,
    shown_commands,
    templates_of,
)
from incident_cli.store import actions
from incident_cli.store.timeline import add_event
from incident_cli.times import format_duration, to_rfc3339


def budget_spent(ctx: TickContext, due: Due, params: Mapping[str, Any]) -> Decision | None:
    """The decision when the (rule, target)'s attempt budget is spent: escalate once (a
    `budget` verdict), or skip when this incident already escalated for it. None: not spent."""
    row, incident, at = due
    max_attempts, cooldown, _ = budget_limits(params)
    used = attempts_used(ctx.db, row["budget_key"], at - cooldown)
    if used < max_attempts:
        return None
    spent = (
        f"attempt budget spent: {used} attempts within {format_duration(cooldown)}"
        f" (max_attempts {max_attempts})"
    )
    escalated = budget_escalated_at(ctx.db, incident.id, row["budget_key"], at - cooldown)
    if escalated is not None:
        # Once per incident while the budget stays spent (a flap reopens it).
        return Decision("skip", f"{spent}; already escalated at {to_rfc3339(escalated)}")
    return Decision("budget", spent)


class CommandKind:
    name: ClassVar[str] = "command"

    def prepare(self, ctx: TickContext, due: Due, params: Mapping[str, Any]) -> Decision:
        templates = templates_of(params)
        if not templates[0]:
            return Decision("refuse", "the command action has no command")
        verify = params.get("verify") or {}
        decision = run_decision(
            ctx, due, params, templates, command_timeout(ctx, params), verify_url=verify.get("http")
        )
        if decision.verdict != "run":
            return decision
        return budget_spent(ctx, due, params) or decision

    def record(self, ctx: TickContext, due: Due, decision: Decision, outcome: Outcome) -> None:
        row, incident, at = due
        job = decision.job
        assert job is not None
        failed = first_failure(outcome)
        if failed is not None:
            record_failed(ctx, due, job, failed, outcome)
            after_failure(ctx, row, incident, at)
            return
        verify = job.verify
        if verify and not outcome.healthy:
            self._await_verification(ctx, due, job, outcome)
            return
        how = f"; {display_url(verify['http'])} answered {outcome.health_detail}" if verify else ""
        record_succeeded(ctx, due, job, outcome, how)
        mark_fixed(ctx.db, incident.id, at)

    @staticmethod
    def _await_verification(ctx: TickContext, due: Due, job: Job, outcome: Outcome) -> None:
        """Exit 0, but not yet healthy: the action keeps running until `verify.within`."""
        row, incident, at = due
        assert job.verify is not None
        verify = job.verify
        shown, output = shown_commands(ctx, outcome)
        last = outcome.commands[-1] if outcome.commands else None
        within = number(verify, "within", 600.0)
        actions.start_verification(
            ctx.db,
            row["id"],
            last.exit_code if last else None,
            ctx.mask(output)[-MAX_STORED_OUTPUT:],
            at + within,
        )
        what = ctx.mask(
            f"{display_url(verify['http'])} to answer 2xx (now: {outcome.health_detail})"
            if verify.get("http")
            else "the incident's alerts to clear"
        )
        add_event(
            ctx.db,
            incident.id,
            at,
            "note",
            f"command exited 0; waiting up to {format_duration(within)} for {what}",
            data={"action_id": job.action_id, "attempt": job.attempt},
        )
        ctx.report(row, "verifying", what, argv=shown, attempt=job.attempt, exit_code=0)
