"""Due actions: each is decided (`decision.decide_action`), claimed by compare-and-swap with a
lease, run in a worker pool (commands, queries, the first health check), and handed back to its
kind to record, if this host's claim still holds.

`recovery/tick.py` imports this module only when an action is due: an idle tick does not pay
for the worker threads, the subprocess machinery and the action kinds.
"""

from __future__ import annotations

import json
import shlex
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from queue import SimpleQueue
from typing import Any

from incident_cli.crashpoint import crash_point
from incident_cli.models import Incident
from incident_cli.recovery import approval, breaker
from incident_cli.recovery.context import HEALTH_TIMEOUT, TickContext, within
from incident_cli.recovery.decision import decide_action
from incident_cli.recovery.diagnostics import run_query
from incident_cli.recovery.environment import LABEL_ENV_BUDGET
from incident_cli.recovery.kinds.base import Decision, Due, Job, Outcome
from incident_cli.recovery.kinds.registry import KINDS
from incident_cli.recovery.process import CommandResult, ProcessIdentity, run_command
from incident_cli.recovery.report import ActionReport
from incident_cli.runtime import TickRuntime
from incident_cli.store import actions
from incident_cli.store.database import write_tx
from incident_cli.store.incidents import get_incident
from incident_cli.store.timeline import add_event

LEASE_GRACE = 60.0

_PREVIEW = {
    "run": "would-run",
    "skip": "would-skip",
    "refuse": "would-refuse",
    "defer": "deferred",
    "budget": "would-escalate",
    "now": "would-escalate",
    "approval": "would-await-approval",
    "breaker": "would-hold",
}


def execute(
    job: Job,
    on_start: Callable[[ProcessIdentity], None] | None = None,
    runtime: TickRuntime | None = None,
) -> Outcome:
    """Worker thread: run the job's commands, queries and first health check. No DB here:
    `on_start` hands each command's process group to the calling thread to record.

    A command runs to its own timeout once started; the queries and the health check, which
    wait on peers, are cut to what is left of the tick."""
    results: list[CommandResult] = []
    for argv in job.steps:
        result = run_command(argv, env=job.env, timeout=job.timeout, cwd=job.cwd, on_start=on_start)
        results.append(result)
        if not job.keep_going and not result.ok:
            break
    queries: list[dict[str, Any]] = []
    if job.queries:
        if job.source is None:
            queries = [{"query": q, "error": "no prometheus source to query"} for q in job.queries]
        else:
            source = job.source
            queries = [
                run_query(source, q, within(runtime, job.query_timeout)) for q in job.queries
            ]
    healthy = detail = None
    if job.verify_url and results and all(r.ok for r in results):
        from incident_cli.http import probe

        healthy, detail = probe(job.verify_url, within(runtime, HEALTH_TIMEOUT))
    return Outcome(tuple(results), tuple(queries), healthy, detail)


def claim(ctx: TickContext, action_id: int) -> Job | None:
    """Decide and, when it is to run, claim the action (compare-and-swap with a lease)."""
    at = ctx.now()
    with write_tx(ctx.db):
        row = actions.load(ctx.db, action_id)
        if row is None or row["status"] != "pending":
            return None  # another tick has it
        incident = get_incident(ctx.db, row["incident_id"])
        if incident is None:
            return None
        decision = decide_action(ctx, row, incident, at)
        if decision.verdict != "run":
            _apply(ctx, row, incident, decision, at)
            return None
        job = decision.job
        assert job is not None
        lease = job.timeout * max(len(job.steps), 1) + LEASE_GRACE
        if job.queries:
            lease += job.query_timeout * len(job.queries)
        if job.verify_url:
            lease += HEALTH_TIMEOUT
        shown = [[ctx.mask(a) for a in argv] for argv in job.steps]
        command_json = (
            json.dumps(shown[0], ensure_ascii=False) if shown and not job.keep_going else None
        )
        if not actions.claim(
            ctx.db, action_id, at, at + lease, command_json, job.target, ctx.host, job.token
        ):
            return None
        if row["kind"] == "block_ip":
            ctx.blocks_left -= 1
        _started_events(ctx, incident, job, shown, at)
        return job


def _apply(
    ctx: TickContext, row: Mapping[str, Any], incident: Incident, decision: Decision, at: float
) -> None:
    """Carry out a decision that runs nothing (the caller holds the transaction)."""
    reason = str(decision.reason)
    if decision.verdict == "skip":
        ctx.skip(row, incident, reason, at)
    elif decision.verdict == "refuse":
        ctx.refuse(row, incident, reason, at)
    elif decision.verdict == "defer":
        ctx.report(row, "deferred", decision.reason)
    elif decision.verdict == "budget":
        ctx.skip(row, incident, reason, at)
        ctx.escalate(incident, at, reason, row["budget_key"])
    elif decision.verdict == "now":
        KINDS[row["kind"]].record(ctx, Due(row, incident, at), decision, Outcome())
    elif decision.verdict == "approval":
        argv = _shown(ctx, decision)
        if approval.request(ctx.db, ctx.config, row, incident, argv, at):
            ctx.report(row, "awaiting-approval", reason, argv=tuple(map(tuple, argv)))
    elif decision.verdict == "breaker":
        _hold(ctx, row, incident, reason, at)


def _shown(ctx: TickContext, decision: Decision) -> list[list[str]]:
    """What the decision would run, secrets masked."""
    steps = decision.job.steps if decision.job is not None else ()
    return [[ctx.mask(a) for a in argv] for argv in steps]


def _hold(
    ctx: TickContext, row: Mapping[str, Any], incident: Incident, reason: str, at: float
) -> None:
    """The breaker stops a due fix: open it if this trips it (its notification queued in this
    transaction), and leave the action pending with one timeline note per opening."""
    opened_at = breaker.open_breaker(ctx.db, ctx.config, at, reason)
    if breaker.hold(ctx.db, row["id"], at, opened_at):
        add_event(
            ctx.db,
            incident.id,
            at,
            "note",
            f"{row['kind']} held by the recovery breaker: {reason};"
            f" `{breaker.RESET_COMMAND}` closes it"[:1000],
            data={"action_id": row["id"], "breaker": True, "reason": reason},
        )
    ctx.report(row, "held", f"recovery breaker: {reason}")


def _started_events(
    ctx: TickContext, incident: Incident, job: Job, shown: list[list[str]], at: float
) -> None:
    what = "; ".join(shlex.join(argv) for argv in shown) or job.kind
    if job.queries:
        what += f" (+{len(job.queries)} quer{'y' if len(job.queries) == 1 else 'ies'})"
    attempt = f" (attempt {job.attempt})" if job.kind == "command" else ""
    add_event(
        ctx.db,
        incident.id,
        at,
        "action_started",
        f"started {job.kind}{attempt}: {what}"[:1000],
        data={
            "action_id": job.action_id,
            "argv": shown,
            "attempt": job.attempt,
            "host": ctx.host,
        },
    )
    if job.left_out:
        names = ", ".join(job.left_out[:20])
        more = len(job.left_out) - 20
        add_event(
            ctx.db,
            incident.id,
            at,
            "note",
            (
                f"{len(job.left_out)} label(s) left out of the command's environment"
                f" (over the {LABEL_ENV_BUDGET // 1024} KiB INCIDENT_LABEL_* budget):"
                f" {names}" + (f" and {more} more" if more > 0 else "")
            )[:1000],
            data={"action_id": job.action_id, "left_out": list(job.left_out[:200])},
        )


def record_process(ctx: TickContext, job: Job, who: ProcessIdentity) -> None:
    """Note the process group a job's command leads, while this tick owns the action."""
    with write_tx(ctx.db):
        actions.record_process(ctx.db, job.action_id, job.token, who.pid, who.pgid, who.start)


def record(ctx: TickContext, job: Job, outcome: Outcome) -> None:
    """Hand what a worker did to its kind, if this tick still owns the action."""
    at = ctx.now()
    with write_tx(ctx.db):
        # Compare-and-swap first: this host's claim must still hold, lease and all.
        row = actions.hold_claim(ctx.db, job.action_id, ctx.host, job.token, at)
        incident = get_incident(ctx.db, job.incident_id)
        if row is None and incident is not None:
            _lease_lost(ctx, job, outcome, at)
        if row is None or incident is None:
            return
        KINDS[job.kind].record(ctx, Due(row, incident, at), Decision.run(job), outcome)


def _lease_lost(ctx: TickContext, job: Job, outcome: Outcome, at: float) -> None:
    """This host stalled past its lease: the outcome is not written (the action is, or will
    be, failed as lost by whichever tick finds the lease expired); a note says so."""
    ran = "; ".join(ctx.mask(r.describe()) for r in outcome.commands) or "no command"
    reason = (
        f"lease lost: host {ctx.host}'s lease on {job.kind} action {job.action_id}"
        f" (attempt {job.attempt}) ran out before its outcome ({ran}) could be recorded;"
        " not recorded"
    )
    add_event(
        ctx.db,
        job.incident_id,
        at,
        "note",
        reason[:1000],
        data={"action_id": job.action_id, "lease": "lost", "host": ctx.host},
    )
    ctx.result.actions.append(
        ActionReport(job.action_id, job.incident_id, job.kind, "lease-lost", reason)
    )


def preview(ctx: TickContext, action_id: int) -> None:
    """--dry-run: the decision about a due action, reported, nothing written."""
    row = actions.load(ctx.db, action_id)
    if row is None:
        return
    incident = get_incident(ctx.db, row["incident_id"])
    if incident is None:
        return
    decision = decide_action(ctx, row, incident, ctx.start)
    job = decision.job
    argv = tuple(tuple(ctx.mask(a) for a in s) for s in job.steps) if job else ()
    if decision.verdict == "run" and row["kind"] == "block_ip":
        ctx.blocks_left -= 1
    if decision.verdict == "run" and row["kind"] in breaker.FIX_KINDS:
        ctx.starting += 1
    reason = decision.reason
    if decision.verdict == "run" and job is not None and job.queries:
        reason = f"and {len(job.queries)} PromQL quer{'y' if len(job.queries) == 1 else 'ies'}"
    ctx.report(row, _PREVIEW[decision.verdict], reason, argv=argv, attempt=int(row["attempts"]) + 1)


def run_due(ctx: TickContext, queue: deque[int]) -> None:
    """Claim and run the due actions in a worker pool, recording each as it ends."""
    runtime = ctx.runtime
    limit = max(ctx.config.recovery.max_concurrent, 1)
    running: dict[Future[Outcome], tuple[Job, float]] = {}
    # Workers report here: a command's process group as soon as it starts (recorded at once, so
    # a later tick can stop it if this one is killed), then the job's end. One queue keeps
    # each job's reports in order and wakes this thread for either.
    events: SimpleQueue[tuple[Job, ProcessIdentity] | Future[Outcome]] = SimpleQueue()
    with ThreadPoolExecutor(max_workers=limit, thread_name_prefix="recover") as pool:
        while queue or running:
            while queue and len(running) < limit:
                if runtime is not None and runtime.expired:
                    runtime.leave(f"{len(queue)} action(s)")
                    queue.clear()
                    break
                job = claim(ctx, queue.popleft())
                if job is not None:
                    crash_point("action-claimed")
                    future = pool.submit(execute, job, partial(_started, events, job), runtime)
                    running[future] = (job, time.monotonic())
                    future.add_done_callback(events.put)
            if not running:
                continue
            event = events.get()
            if isinstance(event, tuple):
                record_process(ctx, *event)
                crash_point("command-started")
            else:
                job, started = running.pop(event)
                if runtime is not None:
                    runtime.spend(
                        f"action {job.action_id} ({job.kind})", time.monotonic() - started
                    )
                record(ctx, job, _safe_result(event, job))


def _started(
    events: SimpleQueue[tuple[Job, ProcessIdentity] | Future[Outcome]],
    job: Job,
    who: ProcessIdentity,
) -> None:
    events.put((job, who))


def _safe_result(future: Future[Outcome], job: Job) -> Outcome:
    try:
        return future.result()
    except Exception as exc:  # a bug in a worker must still leave the action settled
        failed = CommandResult(
            job.steps[0] if job.steps else (job.kind,),
            None,
            "",
            0.0,
            error=f"internal error: {exc.__class__.__name__}: {exc}",
        )
        return Outcome(commands=(failed,))
