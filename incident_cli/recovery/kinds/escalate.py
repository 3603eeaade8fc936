"""`escalate`: page the escalation channels, once per incident, unless a human has it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from incident_cli.recovery.context import TickContext
from incident_cli.recovery.kinds.base import Decision, Due, Outcome


class EscalateKind:
    name: ClassVar[str] = "escalate"

    def prepare(self, ctx: TickContext, due: Due, params: Mapping[str, Any]) -> Decision:
        incident = due.incident
        if incident.status == "acknowledged":
            return Decision("skip", f"acknowledged by {incident.acknowledged_by}")
        if incident.escalated_at is not None:
            return Decision("skip", "already escalated")
        return Decision("now", str(params.get("reason") or "escalation planned"))

    def record(self, ctx: TickContext, due: Due, decision: Decision, outcome: Outcome) -> None:
        """Nothing runs: the escalation is the state change, made in the claim's transaction."""
        row, incident, at = due
        reason = str(decision.reason)
        if ctx.finish(row, "succeeded", at):
            ctx.escalate(incident, at, reason)
        ctx.report(row, "succeeded", f"escalated: {reason}")
