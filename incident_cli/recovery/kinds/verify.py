"""`verify`: a fix whose command exited 0 waits, across ticks, for its health URL to answer
2xx or its incident's alerts to clear. Success marks the incident fixed (through lifecycle);
past the `within` deadline the attempt failed, and is retried or escalated like any failure.

Not an action row of its own: it acts on `command` rows that are `running` with a deadline."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, ClassVar

from incident_cli.handlers.planning import PlanGone, replan
from incident_cli.lifecycle.changes import mark_fixed, mark_recovered
from incident_cli.models import Incident
from incident_cli.recovery.attempts import after_failure
from incident_cli.recovery.context import (
    HEALTH_TIMEOUT,
    TickContext,
    display_url,
    loads,
    plan_ref,
    within,
)
from incident_cli.recovery.kinds.base import Decision, Due, Job, Outcome
from incident_cli.store import actions, alerts
from incident_cli.store.timeline import add_event
from incident_cli.times import format_duration

NO_HEALTH_URL = "its rule no longer configures a health URL"


def stored_url(row: Mapping[str, Any]) -> str | None:
    """The health URL as the row stores it (secrets masked): for messages only."""
    verify = loads(row["params"]).get("verify") or {}
    url = verify.get("http")
    return str(url) if url else None


class VerifyKind:
    name: ClassVar[str] = "verify"

    def prepare(self, ctx: TickContext, due: Due, params: Mapping[str, Any]) -> Decision:
        """`now` when the check is the alerts (read in `record`); else `run` with the health
        URL the rule configures now (secrets and all, never the row's), or `now` with why
        there is none."""
        row, incident, at = due
        if not stored_url(row):
            return Decision("now")
        try:
            real = replan(ctx.db, ctx.config, incident, row["kind"], plan_ref(row))
        except PlanGone:
            return Decision("now", NO_HEALTH_URL)
        verify = real.get("verify")
        url = verify.get("http") if isinstance(verify, dict) else None
        if not url:
            return Decision("now", NO_HEALTH_URL)
        job = Job(row["id"], incident.id, "verify", at, int(row["attempts"]), verify_url=str(url))
        return Decision.run(job)

    @staticmethod
    def check(ctx: TickContext, decision: Decision) -> Outcome:
        """The health check itself (no transaction open), cut to what is left of the tick."""
        if decision.job is None or not decision.job.verify_url:
            return Outcome(
                healthy=False if decision.reason else None, health_detail=decision.reason
            )
        from incident_cli.http import probe

        started = time.monotonic()
        healthy, detail = probe(decision.job.verify_url, within(ctx.runtime, HEALTH_TIMEOUT))
        if ctx.runtime is not None:
            ctx.runtime.spend(
                f"health check of action {decision.job.action_id}", time.monotonic() - started
            )
        return Outcome(healthy=healthy, health_detail=detail)

    def record(self, ctx: TickContext, due: Due, decision: Decision, outcome: Outcome) -> None:
        row, incident, at = due
        url = stored_url(row)
        detail = None if outcome.health_detail is None else ctx.mask(outcome.health_detail)
        current = actions.verification_state(ctx.db, row["id"])
        if current is None or current[0] != "running" or not current[1]:
            return  # another tick settled it
        verify_until = float(current[1])
        if url:
            ok, how = bool(outcome.healthy), f"{display_url(url)} answered {detail}"
        else:
            ok, how = _alerts_cleared(ctx, incident), "the incident's alerts cleared"
        if incident.status == "resolved" and incident.resolution not in ("auto", "recovered"):
            ctx.finish(row, "skipped", at, error="incident resolved by hand", only_if="running")
            ctx.report(row, "skipped", "incident resolved by hand before verification")
            return
        if ok:
            ctx.finish(row, "succeeded", at, only_if="running")
            mark_fixed(ctx.db, incident.id, at)
            if incident.status == "resolved" and incident.resolution == "auto":
                # The poll saw the alerts go before this tick could verify the fix.
                mark_recovered(ctx.db, incident.id, at)
                how += "; resolution auto → recovered"
            add_event(
                ctx.db,
                incident.id,
                at,
                "action_succeeded",
                f"recovered: {how}",
                data={"action_id": row["id"], "verified": url or "alerts"},
            )
            ctx.report(row, "succeeded", f"verified: {how}", attempt=row["attempts"])
            return
        if at < verify_until:
            waiting = f"waiting up to {format_duration(verify_until - at)} more"
            ctx.report(row, "verifying", f"{waiting} ({detail or 'alerts still firing'})")
            return
        what = f"{display_url(url)} answered {detail}" if url else "the alerts are still firing"
        error = f"not recovered within the verify window: {what}"
        ctx.finish(row, "failed", at, error=error, only_if="running")
        add_event(
            ctx.db,
            incident.id,
            at,
            "action_failed",
            error,
            data={"action_id": row["id"], "attempt": row["attempts"]},
        )
        after_failure(ctx, row, incident, at)
        ctx.report(row, "failed", error, attempt=row["attempts"])


def _alerts_cleared(ctx: TickContext, incident: Incident) -> bool:
    if incident.status == "resolved":
        return True
    states = alerts.states(ctx.db, incident.id)
    return bool(states) and all(state == "cleared" for state in states)
