"""`incident recover`: the scheduler. It settles expired leases, checks fixes awaiting
verification, then decides, claims and runs the due actions, and hands each result to its
kind to record. What each kind does is in kinds/ (one module each, `prepare`/`record`).

How one tick goes (all DB work on the calling thread, in short `BEGIN IMMEDIATE` transactions;
commands and HTTP run in worker threads with no transaction open):

1. `running` actions whose lease ran out (the tick running them was killed) are failed, after
   their command's process group (recorded on the row when it started) is stopped if its
   leader is still that process: the command runs in its own session and outlives the tick.
   One claimed by another host cannot be stopped from here and its outcome is unknown: it is
   failed as lost, naming that host. (Every claim names its host and has a token; the write
   that records an outcome first checks, by compare-and-swap, that this host's claim still
   holds and its lease has not run out: a host that stalled past its lease writes nothing.)
2. Fixes waiting for verification are checked (kinds/verify.py).
3. Due `pending` actions run oldest first, at most `recovery.max_concurrent` at a time. Each is
   decided (`decision.decide_action`), then claimed by compare-and-swap (`UPDATE ... WHERE
   status = 'pending'`, rowcount checked) with a lease, so an overlapping tick can never run it
   twice.

Step 3 lives in recovery/due.py, imported only when an action is due (so are the process
module and the action kinds for steps 1 and 2): an idle tick does not pay for worker threads
and subprocesses.

A failed fix is retried as a new action row (attempt n+1) due after `backoff * 2**(n-1)`; the
attempts of each (rule, target) within `cooldown` are counted from those rows, so the budget
survives restarts. When it is spent the incident escalates once (recovery/attempts.py).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

from incident_cli.config.model import Config
from incident_cli.errors import NotFound
from incident_cli.recovery import approval, breaker
from incident_cli.recovery.attempts import after_failure
from incident_cli.recovery.context import TickContext, display_url, loads
from incident_cli.recovery.report import RecoverResult
from incident_cli.runtime import TickRuntime
from incident_cli.store import actions, safety
from incident_cli.store.database import Database, write_tx
from incident_cli.store.incidents import get_incident
from incident_cli.store.timeline import add_event

# ----------------------------------------------------------------------- 1. expired leases


def expire_leases(ctx: TickContext) -> None:
    now = ctx.now()
    rows = actions.expired_leases(ctx.db, now, ctx.incident_id)
    if not rows:
        return
    from incident_cli.recovery.process import ProcessIdentity, is_same_process, stop_orphan

    for row in rows:
        if row["claimed_by"] not in (None, ctx.host):
            _fail_lost(ctx, row, str(row["claimed_by"]), now)
            continue
        error = "interrupted: the tick running it stopped before it finished (lease expired)"
        who = (
            ProcessIdentity(int(row["pid"]), int(row["pgid"]), row["proc_start"])
            if row["pid"] and row["pgid"]
            else None
        )
        if ctx.dry_run:
            if who is not None and is_same_process(who):
                error += f"; would stop its process group {who.pgid}"
            ctx.report(row, "would-fail", error)
            continue
        # Its command runs in a session of its own, so the dead tick's end did not stop it.
        # Stop it before the attempt counts as failed: a retry must never run beside it.
        # (No transaction is open while we wait for it to go.)
        stopped = stop_orphan(who) if who is not None else None
        if stopped is False:
            ctx.result.problems += 1
            ctx.report(
                row,
                "running",
                f"its lease expired but its process group {who.pgid if who else '?'}"
                " could not be stopped; trying again next tick",
            )
            continue
        if stopped:
            error += f"; its process group {who.pgid if who else '?'} was still running"
            error += " and was stopped"
        if _fail_expired(ctx, row, error, now):
            ctx.report(row, "failed", error)


def _fail_lost(ctx: TickContext, row: Mapping[str, Any], host: str, now: float) -> None:
    """Another host's claim ran out: its command cannot be stopped from here and may have run,
    or be running still. Failed as lost, naming the host; the attempt budget and backoff then
    decide on a next attempt (a new one, never this one again), and a retry due after the poll
    resolved the incident (the lost run worked) is skipped."""
    error = (
        f"lost: host {host} was running it and its lease ran out; it cannot be stopped"
        f" from host {ctx.host}, so its outcome is unknown"
    )
    if ctx.dry_run:
        ctx.report(row, "would-fail", error)
    elif _fail_expired(ctx, row, error, now, lost=True, host=host):
        ctx.report(row, "failed", error, attempt=row["attempts"])


def _fail_expired(
    ctx: TickContext, row: Mapping[str, Any], error: str, now: float, **data: Any
) -> bool:
    """Fail a running action whose lease ran out, and plan what comes next (a retry as a new
    attempt, or escalation once the budget is spent). False when it was settled meanwhile."""
    with write_tx(ctx.db):
        if not ctx.finish(row, "failed", now, error=error, only_if="running"):
            return False
        add_event(
            ctx.db,
            row["incident_id"],
            now,
            "action_failed",
            f"{row['kind']} {error}",
            data={"action_id": row["id"], **data},
        )
        incident = get_incident(ctx.db, row["incident_id"])
        if row["kind"] == "command" and incident is not None:
            after_failure(ctx, row, incident, now)
    return True


def expire_approvals(ctx: TickContext) -> None:
    """Commands that waited for approval past their timeout: expired, the incident escalated
    once."""
    now = ctx.now()
    for row in safety.expired_approvals(ctx.db, now, ctx.incident_id):
        if ctx.dry_run:
            ctx.report(row, "would-expire", "not approved within its approval timeout")
            continue
        escalated = approval.expire(ctx.db, ctx.config, row, now)
        if escalated is not None:
            ctx.result.escalated.append(escalated)
        ctx.report(row, "expired", "not approved within its approval timeout")


# ----------------------------------------------------------------------- 2. verification


def check_verifications(ctx: TickContext) -> None:
    rows = actions.awaiting_verification(ctx.db, ctx.incident_id)
    if not rows:
        return
    from incident_cli.recovery.kinds.base import Due
    from incident_cli.recovery.kinds.registry import VERIFY

    for done, row in enumerate(rows):
        if ctx.runtime is not None and ctx.runtime.expired:
            ctx.runtime.leave(f"{len(rows) - done} verification(s)")
            return
        if ctx.dry_run:
            url = (loads(row["params"]).get("verify") or {}).get("http")
            what = f"health of {display_url(url)}" if url else "the incident's alerts to clear"
            ctx.report(row, "would-verify", f"checks {what}")
            continue
        incident = get_incident(ctx.db, row["incident_id"])
        if incident is None:
            continue
        decision = VERIFY.prepare(ctx, Due(row, incident, ctx.now()), {})
        outcome = VERIFY.check(ctx, decision)
        at = ctx.now()
        with write_tx(ctx.db):
            incident = get_incident(ctx.db, row["incident_id"])
            if incident is not None:
                VERIFY.record(ctx, Due(row, incident, at), decision, outcome)


# ----------------------------------------------------------------------- 3. due actions


def recover_due(
    db: Database,
    config: Config,
    now: float,
    *,
    dry_run: bool = False,
    incident_id: int | None = None,
    runtime: TickRuntime | None = None,
) -> RecoverResult:
    """Run (or with dry_run, describe without changing anything) the actions that are due.

    Past the tick's runtime no further action is claimed (they wait for the next tick);
    commands already started run to their own timeout."""
    if incident_id is not None and get_incident(db, incident_id) is None:
        raise NotFound(f"no incident {incident_id}")
    ctx = TickContext(db, config, now, incident_id, dry_run, runtime)
    expire_leases(ctx)
    expire_approvals(ctx)
    if not dry_run:
        breaker.auto_reset(db, config, ctx.now())
    check_verifications(ctx)
    due = actions.due(db, ctx.start, incident_id)
    if not due:
        return ctx.result
    from incident_cli.recovery import due as running

    if dry_run:
        for action_id in due:
            running.preview(ctx, action_id)
        return ctx.result
    running.run_due(ctx, deque(due))
    return ctx.result
