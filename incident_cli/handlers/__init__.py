"""The handler registry: built-in handlers by name, user handlers as `module:function`."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from typing import Any

from sqlite_utils import Database

from incident_cli.config import Config, Rule
from incident_cli.models import ActionPlan, Alert, Incident
from incident_cli.store import add_event

Handler = Callable[[Incident, Alert | None, Rule], list[ActionPlan]]


def default(incident: Incident, alert: Alert | None, rule: Rule) -> list[ActionPlan]:
    """Notify only: the outbox does that for every incident, so no actions."""
    return []


def load_user_handler(name: str) -> Handler:
    """Import `module:function`; raises ImportError/AttributeError/TypeError when unusable."""
    module_name, _, func_name = name.partition(":")
    if not module_name or not func_name:
        raise ValueError("expected module:function")
    module = importlib.import_module(module_name)
    func = getattr(module, func_name)
    if not callable(func):
        raise TypeError(f"{name} is not callable")
    return func  # type: ignore[no-any-return]


def get_handler(name: str) -> Handler:
    if name == "default":
        return default
    if ":" in name:
        return load_user_handler(name)
    from incident_cli.handlers import builtin

    return getattr(builtin, name)  # type: ignore[no-any-return]


def plan_actions(
    db: Database,
    config: Config,
    incident: Incident,
    alert: Alert | None,
    rule: Rule,
    now: float,
) -> list[int]:
    """Call the incident's handler and store what it returns as pending actions.

    Runs inside the write transaction that opened or reopened the incident; nothing runs here.
    A handler that raises is recorded in the timeline rather than failing the whole poll.
    """
    try:
        plans = get_handler(incident.handler)(incident, alert, rule)
    except Exception as exc:  # a user handler's bug must not lose the poll
        add_event(
            db,
            incident.id,
            now,
            "note",
            f"handler {incident.handler} failed: {exc.__class__.__name__}: {exc}"[:500],
        )
        return []
    ids = []
    for plan in plans or []:
        if not isinstance(plan, ActionPlan):
            add_event(
                db, incident.id, now, "note", f"handler returned a non-action: {plan!r}"[:500]
            )
            continue
        ids.append(_insert_action(db, incident.id, plan, now))
    return ids


def _insert_action(db: Database, incident_id: int, plan: ActionPlan, now: float) -> int:
    params: dict[str, Any] = dict(plan.params)
    cursor = db.conn.execute(
        "INSERT INTO actions (incident_id, kind, status, attempts, command, params, target,"
        " planned_at, due_at) VALUES (?, ?, 'pending', 0, ?, ?, ?, ?, ?)",
        (
            incident_id,
            plan.kind,
            None if plan.command is None else json.dumps(list(plan.command)),
            json.dumps(params, default=str),
            plan.target,
            now,
            now + plan.delay,
        ),
    )
    action_id = int(cursor.lastrowid or 0)
    what = " ".join(plan.command) if plan.command else plan.kind
    add_event(
        db,
        incident_id,
        now,
        "action_planned",
        f"planned {plan.kind}: {what}"[:500],
        data={"action_id": action_id, "kind": plan.kind},
    )
    return action_id
