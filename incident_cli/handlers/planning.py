"""Planning: what a rule's handler returns becomes action rows (gates, masking, budgets), and
a due action is planned again from the config (replan). The handlers themselves are named in
handlers/registry.py.

Who decides what:

- A handler `(incident, alert, rule) -> list[ActionPlan]` says what the *rule* asks for. It never
  sees the config, so a user handler stays a plain function.
- The operator's switches are applied here, by `plan_actions`, which has the config: a plan whose
  gate is off is still recorded, as a `skipped` action whose `error` names the switch, so the
  timeline shows what was not done and why. The gates are: `command` → `recovery.enabled`
  (`AUTO_RECOVERY_ENABLED`), `block_ip` → `security.auto_block` (`AUTO_BLOCK_SUSPICIOUS_IPS`),
  and any plan whose params carry `"gate": "<switch>"` (the security handler's `escalate` uses
  `security.auto_escalate`).
- `recover` checks the same gates again when an action comes due, because a switch may have
  been turned off between the poll that planned it and the tick that would run it.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Mapping
from typing import Any

from incident_cli.config.model import Config, Rule
from incident_cli.handlers.registry import load
from incident_cli.models import ActionPlan, Alert, Incident
from incident_cli.redact import redact
from incident_cli.store.actions import incidents_with_only_skipped_blocks, insert_planned
from incident_cli.store.alerts import firing_keys, first_of
from incident_cli.store.database import Database
from incident_cli.store.incidents import action_argvs
from incident_cli.store.timeline import add_event

ACTION_KINDS = ("command", "diagnostics", "block_ip", "escalate")

# switch name → (is it on?, how to say it is off)
GATES: dict[str, tuple[Callable[[Config], bool], str]] = {
    "recovery.enabled": (
        lambda c: c.recovery.enabled,
        "recovery is disabled (recovery.enabled / AUTO_RECOVERY_ENABLED)",
    ),
    "security.auto_block": (
        lambda c: c.security.auto_block,
        "blocking is off (security.auto_block / AUTO_BLOCK_SUSPICIOUS_IPS)",
    ),
    "security.auto_escalate": (
        lambda c: c.security.auto_escalate,
        "auto-escalation is off (security.auto_escalate / SECURITY_INCIDENT_AUTO_ESCALATE)",
    ),
}
_KIND_GATES = {"command": "recovery.enabled", "block_ip": "security.auto_block"}


def gate_reason(config: Config, kind: str, params: Mapping[str, Any]) -> str | None:
    """Why an action of this kind may not run under this config, or None when it may."""
    names = [_KIND_GATES.get(kind), params.get("gate")]
    for name in names:
        if not name:
            continue
        gate = GATES.get(str(name))
        if gate is None:
            return f"unknown gate {name!r}"
        is_on, off_reason = gate
        if not is_on(config):
            return off_reason
    return None


def _plan_problem(plan: object) -> str | None:
    if not isinstance(plan, ActionPlan):
        return f"handler returned a non-action: {plan!r}"
    if plan.kind not in ACTION_KINDS:
        return f"handler returned an action of unknown kind {plan.kind!r}"
    if plan.command is not None and (
        not plan.command or not all(isinstance(item, str) for item in plan.command)
    ):
        return f"handler returned a {plan.kind} action whose command is not a list of strings"
    if plan.kind in ("command", "block_ip") and not plan.command:
        return f"handler returned a {plan.kind} action without a command"
    return None


def plan_actions(
    db: Database,
    config: Config,
    incident: Incident,
    alert: Alert | None,
    rule: Rule,
    now: float,
    *,
    before_write: Callable[[], None] | None = None,
) -> list[int]:
    """Call the incident's handler and store what it returns as actions (pending, or skipped
    when a gate is off).

    Runs inside the write transaction that opened or reopened the incident; nothing runs here.
    A handler that raises is recorded in the timeline rather than failing the whole poll.
    `before_write` is called before the first row is written, if any is (a poll that batches
    its rows writes them first, so every row keeps its order).
    """
    try:
        plans = _call_handler(rule, incident, alert)
    except Exception as exc:  # a user handler's bug must not lose the poll
        if before_write is not None:
            before_write()
        add_event(
            db,
            incident.id,
            now,
            "note",
            f"handler {rule.handler} failed: {exc.__class__.__name__}: {exc}"[:500],
        )
        return []
    ids = []
    if plans and before_write is not None:
        before_write()
    for index, plan in enumerate(plans):
        problem = _plan_problem(plan)
        if problem is not None:
            add_event(db, incident.id, now, "note", problem[:500])
            continue
        threshold = below_threshold(rule, alert) if plan.kind == "block_ip" else None
        ids.append(_insert_action(db, config, incident, plan, index, now, threshold))
    return ids


# The `error` of a block_ip action skipped by a rule's min_value (below_threshold's reason).
_BELOW_THRESHOLD = "not blocked: the alert's value%"


def plan_blocks_now_over_threshold(
    db: Database, config: Config, fetched: Mapping[str, list[Alert]], now: float
) -> list[int]:
    """Plan the block that an open incident's rule held back (its alert was below
    `security.min_value` when it opened) once one of its alerts reaches the threshold.

    Called by each poll in its transaction. Only incidents whose every block_ip action was
    skipped for the threshold are looked at, so a block is planned once, and never while
    blocking is off (it would only be skipped again). Returns the incidents it planned for.
    """
    if gate_reason(config, "block_ip", {}) is not None:
        return []
    if not any(r.security is not None and r.security.min_value is not None for r in config.rules):
        return []
    from incident_cli.store.incidents import get_incident

    held = incidents_with_only_skipped_blocks(db, _BELOW_THRESHOLD)
    by_key = {(a.source, a.fingerprint): a for alerts in fetched.values() for a in alerts}
    planned = []
    for incident_id in held:
        incident = get_incident(db, incident_id)
        if incident is None:
            continue
        rule = config.rule_by_name(incident.rule)
        if rule.security is None or rule.security.min_value is None:
            continue
        candidates = [
            by_key[(source, fingerprint)]
            for source, fingerprint in firing_keys(db, incident_id)
            if (source, fingerprint) in by_key
        ]
        over = [
            (value, origin, alert)
            for alert in candidates
            for value, origin in [alert_value(alert, rule.security.value_annotation)]
            if value is not None and value >= rule.security.min_value
        ]
        if not over:
            continue
        value, origin, alert = max(over, key=lambda item: item[0])
        try:
            plans = _call_handler(rule, incident, alert)
        except Exception:  # plan_actions already recorded this handler's failure
            continue
        blocks = [(i, p) for i, p in enumerate(plans) if _plan_problem(p) is None]
        blocks = [(i, p) for i, p in blocks if p.kind == "block_ip"]
        if not blocks:
            continue
        add_event(
            db,
            incident_id,
            now,
            "note",
            f"the alert's value {value:g} ({origin}) now reaches security.min_value"
            f" {rule.security.min_value:g}: blocking",
            data={"value": value, "min_value": rule.security.min_value},
        )
        for index, plan in blocks:
            _insert_action(db, config, incident, plan, index, now)
        planned.append(incident_id)
    return planned


def _call_handler(rule: Rule, incident: Incident, alert: Alert | None) -> list[Any]:
    # The rule's handler, from the config: the incident row's `handler` column is for display.
    result = load(rule.handler)(incident, alert, rule)
    # A single plan, None, or a generator that fails half-way are a handler's bugs too.
    return [result] if isinstance(result, ActionPlan) else list(result or [])


PLAN_REF = "plan"  # in params: the index of the action's plan in what its handler returned


class PlanGone(Exception):
    """The config no longer plans the action a row refers to."""


def _first_alert(db: Database, incident: Incident) -> Alert:
    found = first_of(db, incident.id)
    if found is None:
        return Alert(incident.source, "", incident.labels, incident.annotations, "firing")
    return found


def replan(
    db: Database, config: Config, incident: Incident, kind: str, index: object
) -> dict[str, Any]:
    """The params, command included (as `template`), of the action a row refers to, planned
    again from the config: this, never the row, is what `recover` runs. The row keeps only the
    reference (its kind and the plan's index); the incident's rule names the rule, and the
    label values come from the incident as they did at planning. Raises PlanGone."""
    rule = config.rule_by_name(incident.rule)
    try:
        plans = _call_handler(rule, incident, _first_alert(db, incident))
    except Exception as exc:
        raise PlanGone(
            f"handler {rule.handler} failed when planned again: {exc.__class__.__name__}: {exc}"
        ) from None
    valid = [(i, p) for i, p in enumerate(plans) if _plan_problem(p) is None]
    if isinstance(index, int) and not isinstance(index, bool):
        found = [p for i, p in valid if i == index and p.kind == kind]
    else:  # planned before rows kept the reference: only an unambiguous kind will do
        found = [p for _, p in valid if p.kind == kind]
    if len(found) != 1:
        raise PlanGone(
            f"rule {rule.name!r} no longer plans this {kind} action"
            " (the config changed since it was planned)"
        )
    plan = found[0]
    params: dict[str, Any] = dict(plan.params)
    if plan.command is not None:
        params["template"] = list(plan.command)
    result: dict[str, Any] = json.loads(json.dumps(params, default=str))
    return result


def alert_value(alert: Alert | None, annotation: str | None) -> tuple[float | None, str]:
    """The alert's current value and where it came from: Prometheus' `value`, else the
    annotation a rule names (Alertmanager's API has no value). None when there is none."""
    import math

    if alert is not None and alert.value is not None:
        return alert.value, "value"
    if alert is None or not annotation:
        return None, "no value reported"
    text = alert.annotations.get(annotation)
    if text is None:
        return None, f"no annotation {annotation!r}"
    try:
        number = float(text.strip())
    except ValueError:
        return None, f"annotation {annotation!r} is not a number: {text[:40]!r}"
    if not math.isfinite(number):
        return None, f"annotation {annotation!r} is not a number: {text[:40]!r}"
    return number, f"annotation {annotation!r}"


def below_threshold(rule: Rule, alert: Alert | None) -> dict[str, Any] | None:
    """Why a rule's `security.min_value` keeps this alert's IP from being blocked, or None."""
    security = rule.security
    if security is None or security.min_value is None:
        return None
    value, origin = alert_value(alert, security.value_annotation)
    limit = f"security.min_value {security.min_value:g}"
    if value is None:
        reason = f"not blocked: the alert's value is unknown ({origin}), so it cannot reach {limit}"
    elif value < security.min_value:
        reason = f"not blocked: the alert's value {value:g} ({origin}) is below {limit}"
    else:
        return None
    return {"reason": reason, "value": value, "min_value": security.min_value}


def mask_params(value: Any, secrets: list[str]) -> Any:
    """A JSON-like value with every secret masked out of every string in it."""
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, list | tuple):
        return [mask_params(item, secrets) for item in value]
    if isinstance(value, Mapping):
        return {str(k): mask_params(v, secrets) for k, v in value.items()}
    return value


def budget_key(incident: Incident, plan: ActionPlan) -> str:
    """Attempts are counted per (rule, target); the target defaults to the incident's key, so a
    reopened incident shares the budget of its earlier episodes."""
    return f"{incident.rule}|{plan.target or incident.key}"


def _insert_action(
    db: Database,
    config: Config,
    incident: Incident,
    plan: ActionPlan,
    index: int,
    now: float,
    threshold: Mapping[str, Any] | None = None,
) -> int:
    params: dict[str, Any] = dict(plan.params)
    if plan.command is not None:
        # Shown in `show` and the review; what runs is planned again from the config (replan).
        params["template"] = list(plan.command)
    skipped = gate_reason(config, plan.kind, params)
    if threshold is not None:
        params.update(value=threshold["value"], min_value=threshold["min_value"])
        skipped = "; ".join(r for r in (threshold["reason"], skipped) if r)
    secrets = config.secrets()
    shown = None if plan.command is None else [redact(item, secrets) for item in plan.command]
    # No secret is ever stored, and nothing stored is ever run: `recover` plans the action
    # again from the rule in the config (see `replan`), so every attempt, retries included,
    # runs what the rule says, and a row changed behind our back runs nothing of its own.
    params = mask_params(json.loads(json.dumps(params, default=str)), secrets)
    params[PLAN_REF] = index
    action_id = insert_planned(
        db,
        incident.id,
        plan.kind,
        "skipped" if skipped else "pending",
        None if shown is None else json.dumps(shown, ensure_ascii=False),
        json.dumps(params, default=str),
        None if plan.target is None else redact(plan.target, secrets),
        redact(budget_key(incident, plan), secrets) if plan.kind == "command" else None,
        skipped,
        now,
        now + max(plan.delay, 0.0),
        now if skipped else None,
    )
    steps = action_argvs(plan.kind, shown, params)
    what = "; ".join(shlex.join(argv) for argv in steps) or plan.kind
    message = f"planned {plan.kind}: {what}"
    if skipped:
        message += f" — skipped: {skipped}"
    add_event(
        db,
        incident.id,
        now,
        "action_planned",
        message[:500],
        data={
            "action_id": action_id,
            "kind": plan.kind,
            "status": "skipped" if skipped else "pending",
        },
    )
    return action_id
