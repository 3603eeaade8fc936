"""Built-in handlers (service_down, slo_breach, performance_issue, security_incident)."""

from __future__ import annotations

from incident_cli.config import Rule
from incident_cli.models import ActionPlan, Alert, Incident


def service_down(incident: Incident, alert: Alert | None, rule: Rule) -> list[ActionPlan]:
    return []


def slo_breach(incident: Incident, alert: Alert | None, rule: Rule) -> list[ActionPlan]:
    return []


def performance_issue(incident: Incident, alert: Alert | None, rule: Rule) -> list[ActionPlan]:
    return []


def security_incident(incident: Incident, alert: Alert | None, rule: Rule) -> list[ActionPlan]:
    return []
