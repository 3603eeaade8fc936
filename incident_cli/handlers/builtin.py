"""Built-in handlers (service_down, slo_breach, performance_issue, security_incident).

A handler says what a rule asks for when its incident opens or reopens. It sees the incident,
the alert that opened it and the rule, never the config: the operator's switches
(`recovery.enabled`, `security.auto_block`, `security.auto_escalate`) are applied by
`plan_actions` at planning time and again by `recover` at run time (see `handlers.gate_reason`).
"""

from __future__ import annotations

from typing import Any

from incident_cli.config.model import DiagnosticsRule, Rule
from incident_cli.models import ActionPlan, Alert, Incident

# What `performance_issue` snapshots when its rule names no diagnostics of its own: the
# busiest processes by CPU and by memory, from the rule's Prometheus.
DEFAULT_PERFORMANCE_QUERIES = (
    "topk(5, rate(process_cpu_seconds_total[5m]))",
    "topk(5, process_resident_memory_bytes)",
)


def default(incident: Incident, alert: Alert | None, rule: Rule) -> list[ActionPlan]:
    """Notify only: the outbox does that for every incident, so no actions."""
    return []


def service_down(incident: Incident, alert: Alert | None, rule: Rule) -> list[ActionPlan]:
    """Run the rule's recovery commands (in order, as one attempt), then verify.

    Without `recovery` in the rule there is nothing to restart: the incident is only notified.
    """
    recovery = rule.recovery
    if recovery is None or not recovery.commands:
        return []
    first, *rest = recovery.commands
    params: dict[str, Any] = {
        "max_attempts": recovery.max_attempts,
        "backoff": recovery.backoff,
        "cooldown": recovery.cooldown,
        "timeout": recovery.timeout,
        "verify": None
        if recovery.verify is None
        else {"within": recovery.verify.within, "http": recovery.verify.http},
    }
    if rest:
        params["then"] = [list(argv) for argv in rest]
    return [ActionPlan(kind="command", command=tuple(first), params=params)]


def _diagnostics(diagnostics: DiagnosticsRule) -> ActionPlan:
    return ActionPlan(
        kind="diagnostics",
        params={
            "commands": [list(argv) for argv in diagnostics.commands],
            "queries": list(diagnostics.queries),
            "source": diagnostics.source,
            "timeout": diagnostics.timeout,
        },
    )


def slo_breach(incident: Incident, alert: Alert | None, rule: Rule) -> list[ActionPlan]:
    """Notify (the outbox does that) and collect diagnostics: the rule's, or the busiest
    scraped processes when it names none."""
    return performance_issue(incident, alert, rule)


def performance_issue(incident: Incident, alert: Alert | None, rule: Rule) -> list[ActionPlan]:
    """Snapshot the rule's diagnostics, or the busiest processes when it names none."""
    diagnostics = rule.diagnostics
    if diagnostics is None or not (diagnostics.commands or diagnostics.queries):
        diagnostics = DiagnosticsRule(
            commands=(),
            queries=DEFAULT_PERFORMANCE_QUERIES,
            source=diagnostics.source if diagnostics else None,
            timeout=diagnostics.timeout if diagnostics else 30.0,
        )
    return [_diagnostics(diagnostics)]


def security_incident(incident: Incident, alert: Alert | None, rule: Rule) -> list[ActionPlan]:
    """Escalate at once (gated by `security.auto_escalate`); block the source IP when the rule
    has a `block_command` (gated by `security.auto_block`, which is off by default)."""
    plans = [
        ActionPlan(
            kind="escalate",
            params={"gate": "security.auto_escalate", "reason": "security incident"},
        )
    ]
    security = rule.security
    if security is not None and security.block_command:
        plans.append(
            ActionPlan(
                kind="block_ip",
                command=tuple(security.block_command),
                params={"ip_label": security.ip_label},
            )
        )
    return plans
