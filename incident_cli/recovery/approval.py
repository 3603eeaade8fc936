"""Approval gates: with `recovery.approval: required` on a rule (or `RECOVERY_APPROVAL=required`
for every rule) each planned command attempt waits as `awaiting_approval`, an `approval`
notification goes to the rule's channels, and `incident approve` / `incident deny` settle it.
An approved action runs at the next `recover`; past `approval_timeout` it is `expired` and its
incident escalates once. Every step is a timeline event naming who and when."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from incident_cli.config.model import Config
from incident_cli.errors import NotFound, UsageError
from incident_cli.lifecycle.changes import escalate
from incident_cli.models import Incident
from incident_cli.notify.outbox import queue_approval
from incident_cli.store import actions, safety
from incident_cli.store.database import Database, write_tx
from incident_cli.store.incidents import get_incident
from incident_cli.store.timeline import add_event
from incident_cli.times import to_rfc3339


def approval_timeout(config: Config, rule_name: str) -> float | None:
    """The approval timeout when the rule's commands need approval, else None."""
    rule = config.rule_by_name(rule_name)
    rec = rule.recovery
    if not (config.recovery.approval or (rec is not None and rec.approval)):
        return None
    if rec is not None and rec.approval_timeout is not None:
        return rec.approval_timeout
    return config.recovery.approval_timeout


def needs_approval(config: Config, row: Mapping[str, Any], incident: Incident) -> bool:
    """A command attempt that its rule gates and no one has approved yet. Reads only."""
    if row["kind"] != "command" or row["decided_by"] is not None:
        return False
    return approval_timeout(config, incident.rule) is not None


def request(
    db: Database,
    config: Config,
    row: Mapping[str, Any],
    incident: Incident,
    argv: list[list[str]],
    at: float,
) -> bool:
    """pending → awaiting_approval, with its timeline event and the `approval` notification,
    in the caller's transaction. `argv` is what would run, secrets already masked."""
    timeout = approval_timeout(config, incident.rule) or config.recovery.approval_timeout
    until = at + timeout
    if not safety.request_approval(db, row["id"], until):
        return False
    approve = f"incident approve {row['id']} --by NAME"
    deny = f"incident deny {row['id']} --by NAME --note TEXT"
    shown = " ; ".join(" ".join(step) for step in argv)
    add_event(
        db,
        incident.id,
        at,
        "approval_requested",
        f"command waits for approval (until {to_rfc3339(until)}): {shown}; approve with: {approve}"[
            :1000
        ],
        data={"action_id": row["id"], "argv": argv, "until": to_rfc3339(until)},
    )
    queue_approval(
        db,
        config,
        incident,
        at,
        {
            "action_id": row["id"],
            "argv": argv,
            "approve_command": approve,
            "deny_command": deny,
            "expires_at": to_rfc3339(until),
        },
    )
    return True


def _targets(db: Database, ident: str) -> list[dict[str, Any]]:
    """The actions awaiting approval that ID names: `action:N`, `incident:N`, or a bare N
    (the action N or the incident N; when it could be either, the user must say which)."""
    kind, _, number = ident.rpartition(":")
    if kind not in ("", "action", "incident") or not number.isdigit():
        raise UsageError(f"ID must be a number, action:N or incident:N, got {ident!r}")
    n = int(number)
    row = actions.load(db, n) if kind != "incident" else None
    as_action = [row] if row is not None and row["status"] == "awaiting_approval" else []
    as_incident = safety.awaiting_of_incident(db, n) if kind != "action" else []
    if as_action and [r for r in as_incident if r["id"] != n]:
        raise UsageError(
            f"ID {n} names both action {n} and actions of incident {n} awaiting approval:"
            f" say action:{n} or incident:{n}"
        )
    found = as_action or as_incident
    if not found:
        raise NotFound(f"nothing awaits approval under {ident}")
    return found


def approve(db: Database, ident: str, by: str, now: float) -> list[int]:
    """`incident approve ID --by NAME`: each action ID names runs at the next `recover`."""
    done = []
    with write_tx(db):
        for row in _targets(db, ident):
            if safety.approve(db, row["id"], by, now):
                add_event(
                    db,
                    row["incident_id"],
                    now,
                    "action_approved",
                    f"command approved by {by}; it runs at the next recover",
                    actor=by,
                    data={"action_id": row["id"], "by": by},
                )
                done.append(row["id"])
    return done


def deny(db: Database, ident: str, by: str, note: str, now: float) -> list[int]:
    """`incident deny ID --by NAME --note TEXT`: each action ID names is skipped, for good."""
    done = []
    with write_tx(db):
        for row in _targets(db, ident):
            reason = f"denied by {by}: {note}"
            if safety.settle_awaiting(db, row["id"], "skipped", now, reason[:2000], by):
                add_event(
                    db,
                    row["incident_id"],
                    now,
                    "action_denied",
                    f"command {reason}"[:1000],
                    actor=by,
                    data={"action_id": row["id"], "by": by, "note": note},
                )
                done.append(row["id"])
    return done


def expire(db: Database, config: Config, row: Mapping[str, Any], now: float) -> int | None:
    """Past its timeout: `expired`, and its incident escalates once (skipped instead when the
    incident resolved meanwhile). In its own transaction. Returns the incident's id when it
    escalated now."""
    until = to_rfc3339(row["approval_until"])
    with write_tx(db):
        incident = get_incident(db, row["incident_id"])
        if incident is None or incident.status == "resolved":
            safety.settle_awaiting(db, row["id"], "skipped", now, "incident resolved")
            return None
        reason = f"not approved by {until} (approval timeout)"
        if not safety.settle_awaiting(db, row["id"], "expired", now, reason):
            return None
        add_event(
            db,
            incident.id,
            now,
            "approval_expired",
            f"command expired: {reason}",
            data={"action_id": row["id"]},
        )
        why = f"a recovery command was {reason}"
        return incident.id if escalate(db, config, incident, now, why) else None
