"""`incident recover`: running due actions safely — claims, commands, verification, attempt
budgets, diagnostics, IP blocks and escalation.

How one tick goes (all DB work on the calling thread, in short `BEGIN IMMEDIATE` transactions;
commands and HTTP run in worker threads with no transaction open):

1. `running` actions whose lease ran out (the tick running them was killed) are failed, after
   their command's process group (recorded on the row when it started) is stopped if its
   leader is still that process: the command runs in its own session and outlives the tick.
2. Fixes waiting for verification are checked: their incident's alerts cleared, or their
   health URL answers 2xx. Success sets `incidents.fixed_at`, so the poll that resolves the
   incident records `recovered`; past the `within` deadline the attempt failed.
3. Due `pending` actions run oldest first, at most `recovery.max_concurrent` at a time. Each is
   claimed by compare-and-swap (`UPDATE ... WHERE status = 'pending'`, rowcount checked) with a
   lease, so an overlapping tick can never run it twice.

A failed fix is retried as a new action row (attempt n+1) due after `backoff * 2**(n-1)`; the
attempts of each (rule, target) within `cooldown` are counted from those rows, so the budget
survives restarts. When it is spent the incident escalates once (`incidents.escalated_at`).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shlex
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from queue import SimpleQueue
from typing import Any

from incident_cli.config.model import Config, SourceConfig
from incident_cli.crashpoint import crash_point
from incident_cli.errors import NotFound
from incident_cli.handlers.planning import (
    ACTION_KINDS,
    PLAN_REF,
    PlanGone,
    gate_reason,
    mask_params,
    replan,
)
from incident_cli.lifecycle.changes import escalate, mark_fixed, mark_recovered
from incident_cli.models import Incident
from incident_cli.recovery.diagnostics import MAX_QUERY_RESULT_CHARS, prometheus_source, run_query
from incident_cli.recovery.environment import (
    LABEL_ENV_BUDGET,
    Refused,
    base_env,
    command_env,
    render_argv,
)
from incident_cli.recovery.process import (
    CommandResult,
    ProcessIdentity,
    is_same_process,
    run_command,
    stop_orphan,
)
from incident_cli.recovery.report import ActionReport, RecoverResult
from incident_cli.redact import redact
from incident_cli.runtime import TickRuntime
from incident_cli.store import actions, alerts, timeline
from incident_cli.store.database import Database, write_tx
from incident_cli.store.incidents import get_incident
from incident_cli.store.timeline import add_event
from incident_cli.times import format_duration, to_rfc3339

MAX_STORED_OUTPUT = 8192  # tail kept in actions.output

LEASE_GRACE = 60.0

HEALTH_TIMEOUT = 10.0

BLOCK_DEDUPE_SECONDS = 86400.0  # an IP blocked within this window is not blocked again


def display_url(url: str) -> str:
    """The URL without any user:password@ part, for messages."""
    return re.sub(r"^(https?://)[^/@]*@", r"\1", url)


def budget_escalated_at(
    db: Database, incident_id: int, budget_key: str, since: float
) -> float | None:
    """When the incident last escalated for this spent budget, if that was at or after
    `since` (the start of the budget's cooldown window). A reopen clears `escalated_at`, but
    while the same budget stays spent the incident has already been escalated for it."""
    return timeline.last_budget_escalation(db, incident_id, budget_key, since)


@dataclass(frozen=True)
class _Job:
    """Claimed work for a worker thread: everything it needs, nothing of the DB."""

    action_id: int
    incident_id: int
    kind: str
    started_at: float
    attempt: int
    steps: tuple[tuple[str, ...], ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 600.0
    cwd: str | None = None
    queries: tuple[str, ...] = ()
    source: SourceConfig | None = None
    query_timeout: float = 30.0
    verify_url: str | None = None
    verify: Mapping[str, Any] | None = None  # the rule's `verify`, as planned again now
    target: str | None = None  # what a block_ip acts on: the parsed IP
    left_out: tuple[str, ...] = ()  # labels over the environment budget


@dataclass(frozen=True)
class _Outcome:
    commands: tuple[CommandResult, ...] = ()
    queries: tuple[dict[str, Any], ...] = ()
    healthy: bool | None = None  # the health check right after a fix; None: not checked
    health_detail: str | None = None


def _within(runtime: TickRuntime | None, timeout: float) -> float:
    return timeout if runtime is None else runtime.within(timeout)


def _execute(
    job: _Job,
    on_start: Callable[[ProcessIdentity], None] | None = None,
    runtime: TickRuntime | None = None,
) -> _Outcome:
    """Worker thread: run the job's commands, queries and first health check. No DB here:
    `on_start` hands each command's process group to the calling thread to record.

    A command runs to its own timeout once started; the queries and the health check, which
    wait on peers, are cut to what is left of the tick."""
    results: list[CommandResult] = []
    for argv in job.steps:
        result = run_command(argv, env=job.env, timeout=job.timeout, cwd=job.cwd, on_start=on_start)
        results.append(result)
        if job.kind != "diagnostics" and not result.ok:
            break
    queries: list[dict[str, Any]] = []
    if job.queries:
        if job.source is None:
            queries = [{"query": q, "error": "no prometheus source to query"} for q in job.queries]
        else:
            source = job.source
            queries = [
                run_query(source, q, _within(runtime, job.query_timeout)) for q in job.queries
            ]
    healthy = detail = None
    if job.verify_url and results and all(r.ok for r in results):
        from incident_cli.http import probe

        healthy, detail = probe(job.verify_url, _within(runtime, HEALTH_TIMEOUT))
    return _Outcome(tuple(results), tuple(queries), healthy, detail)


def _loads(text: str | None) -> Any:
    return json.loads(text) if text else {}


def _number(params: Mapping[str, Any], key: str, default: float) -> float:
    value = params.get(key)
    return float(value) if isinstance(value, int | float) else default


class _Tick:
    """One `recover` run: the DB, the config, the clock, and what was done."""

    def __init__(
        self,
        db: Database,
        config: Config,
        now: float,
        incident_id: int | None,
        dry_run: bool,
        runtime: TickRuntime | None = None,
    ) -> None:
        self.db = db
        self.config = config
        self.runtime = runtime
        self.start = now
        self.t0 = time.monotonic()
        self.incident_id = incident_id
        self.result = RecoverResult(dry_run=dry_run)
        self.blocks_left = config.security.max_blocks_per_tick
        self.secrets = config.secrets()

    def now(self) -> float:
        """The injected start time moved on by the real time spent in this tick."""
        return self.start + (time.monotonic() - self.t0)

    def mask(self, text: str) -> str:
        return redact(text, self.secrets)

    def report(self, row: Mapping[str, Any], outcome: str, detail: str | None, **kw: Any) -> None:
        if detail is not None:
            detail = self.mask(detail)
        self.result.actions.append(
            ActionReport(row["id"], row["incident_id"], row["kind"], outcome, detail, **kw)
        )

    # ------------------------------------------------------------------- finishing an action

    def _finish(
        self,
        row: Mapping[str, Any],
        status: str,
        at: float,
        *,
        error: str | None = None,
        exit_code: int | None = None,
        output: str | None = None,
        only_if: str = "pending",
    ) -> bool:
        return actions.finish(
            self.db,
            row["id"],
            status,
            at,
            error=None if error is None else self.mask(error)[:2000],
            exit_code=exit_code,
            output=None if output is None else self.mask(output)[-MAX_STORED_OUTPUT:],
            only_if=only_if,
        )

    def _after_failure(self, row: Mapping[str, Any], incident: Incident, at: float) -> None:
        """A fix attempt failed: plan the next attempt after a doubling backoff, or escalate
        once when the budget of its (rule, target) is spent."""
        if incident.status == "resolved":
            return
        try:
            params = replan(self.db, self.config, incident, row["kind"], self._plan_ref(row))
        except PlanGone:
            params = _loads(row["params"])  # only its budget numbers are read here
        max_attempts = int(_number(params, "max_attempts", 3))
        cooldown = _number(params, "cooldown", 3600.0)
        backoff = _number(params, "backoff", 30.0)
        attempt = int(row["attempts"])
        used = self._attempts_used(row["budget_key"], at - cooldown)
        if attempt >= max_attempts or used >= max_attempts:
            reason = (
                f"recovery failed {attempt} time{'s' if attempt != 1 else ''}"
                f" ({used} attempt{'s' if used != 1 else ''} within"
                f" {format_duration(cooldown)}, max_attempts {max_attempts})"
            )
            key = row["budget_key"]
            if budget_escalated_at(self.db, incident.id, key, at - cooldown) is None and escalate(
                self.db, self.config, incident, at, reason, key
            ):
                self.result.escalated.append(incident.id)
            return
        delay = backoff * 2 ** (attempt - 1)
        # The retry refers to the same plan; what it runs is planned again when it is due.
        stored = mask_params({**params, PLAN_REF: self._plan_ref(row)}, self.secrets)
        template = stored.get("template")
        retry_id = actions.insert_retry(
            self.db,
            row["incident_id"],
            row["kind"],
            attempt,
            json.dumps(template, ensure_ascii=False)
            if template
            else self.mask(row["command"] or "") or None,
            json.dumps(stored, default=str),
            row["target"],
            row["budget_key"],
            at,
            at + delay,
        )
        add_event(
            self.db,
            incident.id,
            at,
            "action_planned",
            f"planned retry {attempt + 1} of {max_attempts} in {format_duration(delay)}",
            data={"action_id": retry_id, "kind": row["kind"], "attempt": attempt + 1},
        )

    def _attempts_used(self, key: str | None, since: float) -> int:
        if not key:
            return 0
        return actions.attempts_used(self.db, key, since)

    # ------------------------------------------------------------------- 1. expired leases

    def expire_leases(self) -> None:
        now = self.now()
        rows = actions.expired_leases(self.db, now, self.incident_id)
        for row in rows:
            error = "interrupted: the tick running it stopped before it finished (lease expired)"
            who = (
                ProcessIdentity(int(row["pid"]), int(row["pgid"]), row["proc_start"])
                if row["pid"] and row["pgid"]
                else None
            )
            if self.result.dry_run:
                if who is not None and is_same_process(who):
                    error += f"; would stop its process group {who.pgid}"
                self.report(row, "would-fail", error)
                continue
            # Its command runs in a session of its own, so the dead tick's end did not stop it.
            # Stop it before the attempt counts as failed: a retry must never run beside it.
            # (No transaction is open while we wait for it to go.)
            stopped = stop_orphan(who) if who is not None else None
            if stopped is False:
                self.result.problems += 1
                self.report(
                    row,
                    "running",
                    f"its lease expired but its process group {who.pgid if who else '?'}"
                    " could not be stopped; trying again next tick",
                )
                continue
            if stopped:
                error += f"; its process group {who.pgid if who else '?'} was still running"
                error += " and was stopped"
            with write_tx(self.db):
                if not self._finish(row, "failed", now, error=error, only_if="running"):
                    continue
                add_event(
                    self.db,
                    row["incident_id"],
                    now,
                    "action_failed",
                    f"{row['kind']} {error}",
                    data={"action_id": row["id"]},
                )
                incident = get_incident(self.db, row["incident_id"])
                if row["kind"] == "command" and incident is not None:
                    self._after_failure(row, incident, now)
            self.report(row, "failed", error)

    # ------------------------------------------------------------------- 2. verification

    def check_verifications(self) -> None:
        rows = actions.awaiting_verification(self.db, self.incident_id)
        for done, row in enumerate(rows):
            if self.runtime is not None and self.runtime.expired:
                self.runtime.leave(f"{len(rows) - done} verification(s)")
                return
            params = _loads(row["params"])
            verify = params.get("verify") or {}
            url = verify.get("http")  # as stored: secrets masked, for messages
            if self.result.dry_run:
                what = f"health of {display_url(url)}" if url else "the incident's alerts to clear"
                self.report(row, "would-verify", f"checks {what}")
                continue
            healthy, detail = (None, None)
            if url:
                from incident_cli.http import probe

                real_url = self._real_verify_url(row)
                started = time.monotonic()
                healthy, detail = (
                    probe(real_url, _within(self.runtime, HEALTH_TIMEOUT))
                    if real_url
                    else (False, "its rule no longer configures a health URL")
                )
                if self.runtime is not None:
                    self.runtime.spend(
                        f"health check of action {row['id']}", time.monotonic() - started
                    )
            self._settle_verification(row, url, healthy, detail)

    def _real_verify_url(self, row: Mapping[str, Any]) -> str | None:
        """The health URL the rule configures now (secrets and all), never the row's."""
        incident = get_incident(self.db, row["incident_id"])
        if incident is None:
            return None
        try:
            real = replan(self.db, self.config, incident, row["kind"], self._plan_ref(row))
        except PlanGone:
            return None
        verify = real.get("verify")
        url = verify.get("http") if isinstance(verify, dict) else None
        return str(url) if url else None

    @staticmethod
    def _plan_ref(row: Mapping[str, Any]) -> object:
        return _loads(row["params"]).get(PLAN_REF)

    def _alerts_cleared(self, incident: Incident) -> bool:
        if incident.status == "resolved":
            return True
        states = alerts.states(self.db, incident.id)
        return bool(states) and all(state == "cleared" for state in states)

    def _settle_verification(
        self, row: Mapping[str, Any], url: str | None, healthy: bool | None, detail: str | None
    ) -> None:
        now = self.now()
        detail = None if detail is None else self.mask(detail)
        with write_tx(self.db):
            incident = get_incident(self.db, row["incident_id"])
            current = actions.verification_state(self.db, row["id"])
            if incident is None or current is None or current[0] != "running" or not current[1]:
                return  # another tick settled it
            verify_until = float(current[1])
            if url:
                ok, how = bool(healthy), f"{display_url(url)} answered {detail}"
            else:
                ok, how = self._alerts_cleared(incident), "the incident's alerts cleared"
            if incident.status == "resolved" and incident.resolution not in ("auto", "recovered"):
                self._finish(
                    row, "skipped", now, error="incident resolved by hand", only_if="running"
                )
                self.report(row, "skipped", "incident resolved by hand before verification")
                return
            if ok:
                self._finish(row, "succeeded", now, only_if="running")
                mark_fixed(self.db, incident.id, now)
                if incident.status == "resolved" and incident.resolution == "auto":
                    # The poll saw the alerts go before this tick could verify the fix.
                    mark_recovered(self.db, incident.id, now)
                    how += "; resolution auto → recovered"
                add_event(
                    self.db,
                    incident.id,
                    now,
                    "action_succeeded",
                    f"recovered: {how}",
                    data={"action_id": row["id"], "verified": url or "alerts"},
                )
                self.report(row, "succeeded", f"verified: {how}", attempt=row["attempts"])
                return
            if now < verify_until:
                waiting = f"waiting up to {format_duration(verify_until - now)} more"
                self.report(row, "verifying", f"{waiting} ({detail or 'alerts still firing'})")
                return
            what = f"{display_url(url)} answered {detail}" if url else "the alerts are still firing"
            error = f"not recovered within the verify window: {what}"
            self._finish(row, "failed", now, error=error, only_if="running")
            add_event(
                self.db,
                incident.id,
                now,
                "action_failed",
                error,
                data={"action_id": row["id"], "attempt": row["attempts"]},
            )
            self._after_failure(row, incident, now)
            self.report(row, "failed", error, attempt=row["attempts"])

    # ------------------------------------------------------------------- 3. due actions

    def due_actions(self) -> list[int]:
        return actions.due(self.db, self.start, self.incident_id)

    def _refuse(self, row: Mapping[str, Any], incident: Incident, why: str, at: float) -> None:
        why = self.mask(why)
        self._finish(row, "refused", at, error=why)
        add_event(
            self.db,
            incident.id,
            at,
            "action_refused",
            f"refused {row['kind']}: {why}",
            data={"action_id": row["id"], "kind": row["kind"], "reason": why},
        )
        self.result.problems += 1
        self.report(row, "refused", why)

    def _skip(self, row: Mapping[str, Any], incident: Incident, why: str, at: float) -> None:
        self._finish(row, "skipped", at, error=why)
        add_event(
            self.db,
            incident.id,
            at,
            "action_skipped",
            f"skipped {row['kind']}: {why}",
            data={"action_id": row["id"], "kind": row["kind"], "reason": why},
        )
        self.report(row, "skipped", why)

    def _prepare(
        self, row: Mapping[str, Any], incident: Incident, at: float
    ) -> tuple[str, str | None, _Job | None]:
        """Decide what to do with a due action: ("skip"|"refuse"|"defer"|"escalate"|"run",
        reason, job). Reads only; the caller writes."""
        kind = row["kind"]
        if kind not in ACTION_KINDS:
            return "refuse", f"unknown action kind {kind!r}", None
        if incident.status == "resolved":
            return "skip", "incident resolved", None
        # What runs comes from the config, planned again now: the row only says which plan.
        try:
            params = replan(self.db, self.config, incident, kind, self._plan_ref(row))
        except PlanGone as exc:
            return "refuse", str(exc), None
        gate = gate_reason(self.config, kind, params)
        if gate is not None:
            return "skip", gate, None
        if kind == "escalate":
            if incident.status == "acknowledged":
                return "skip", f"acknowledged by {incident.acknowledged_by}", None
            if incident.escalated_at is not None:
                return "skip", "already escalated", None
            return "escalate", str(params.get("reason") or "escalation planned"), None

        environ = self.config.env or dict(os.environ)
        start_env = base_env(environ, self.config.recovery.env_passthrough, self.secrets)
        extra: dict[str, str] = {}
        if kind == "block_ip":
            label = str(params.get("ip_label") or "source_ip")
            raw = incident.labels.get(label)
            if raw is None:
                return "refuse", f"label {label!r} is not set on the alert", None
            problem = self._ip_problem(label, raw)
            if isinstance(problem, str):
                return "refuse", problem, None
            ip = problem
            if self._recently_blocked(str(ip), at):
                return "skip", f"{ip} was already blocked", None
            if self.blocks_left <= 0:
                return "defer", "max_blocks_per_tick reached; next tick", None
            extra = {"ip": str(ip)}
        templates: list[list[str]] = []
        if kind in ("command", "block_ip"):
            templates = [list(params.get("template") or [])]
            templates += [list(t) for t in params.get("then") or []]
        elif kind == "diagnostics":
            templates = [list(t) for t in params.get("commands") or []]
        if kind in ("command", "block_ip") and not templates[0]:
            return "refuse", f"the {kind} action has no command", None
        steps = []
        for template in templates:
            try:
                steps.append(tuple(render_argv(template, incident.labels, extra)))
            except Refused as exc:
                return "refuse", str(exc), None
        if kind == "command":
            max_attempts = int(_number(params, "max_attempts", 3))
            cooldown = _number(params, "cooldown", 3600.0)
            used = self._attempts_used(row["budget_key"], at - cooldown)
            if used >= max_attempts:
                spent = (
                    f"attempt budget spent: {used} attempts within {format_duration(cooldown)}"
                    f" (max_attempts {max_attempts})"
                )
                escalated = budget_escalated_at(
                    self.db, incident.id, row["budget_key"], at - cooldown
                )
                if escalated is not None:
                    # Once per incident while the budget stays spent (a flap reopens it).
                    return "skip", f"{spent}; already escalated at {to_rfc3339(escalated)}", None
                return "budget", spent, None
        timeout_value = params.get("timeout")
        timeout = (
            float(timeout_value)
            if isinstance(timeout_value, int | float) and timeout_value > 0
            else self.config.recovery.default_timeout
        )
        env, left_out = command_env(
            start_env,
            incident,
            {
                "INCIDENT_ACTION_ID": str(row["id"]),
                "INCIDENT_ATTEMPT": str(int(row["attempts"]) + 1),
                **({"INCIDENT_IP": extra["ip"]} if "ip" in extra else {}),
            },
        )
        source = None
        queries: tuple[str, ...] = ()
        if kind == "diagnostics":
            queries = tuple(str(q) for q in params.get("queries") or [])
            source = prometheus_source(self.config, params.get("source"))
            timeout = _number(params, "timeout", 30.0)
        verify = params.get("verify") or {}
        job = _Job(
            action_id=row["id"],
            incident_id=incident.id,
            kind=kind,
            started_at=at,
            attempt=int(row["attempts"]) + 1,
            steps=tuple(steps),
            env=env,
            timeout=timeout,
            cwd=self.config.base_dir,
            queries=queries,
            source=source,
            query_timeout=timeout,
            verify_url=verify.get("http") if kind == "command" else None,
            verify=verify or None,
            target=extra.get("ip"),
            left_out=tuple(left_out),
        )
        return "run", None, job

    def _ip_problem(
        self, label: str, raw: str
    ) -> str | ipaddress.IPv4Address | ipaddress.IPv6Address:
        text = raw.strip()
        try:
            ip = ipaddress.ip_address(text) if len(text) <= 64 else None
        except ValueError:
            ip = None
        if ip is None or (isinstance(ip, ipaddress.IPv6Address) and ip.scope_id):
            return f"label {label!r} is not an IP address"
        if ip.is_unspecified or ip.is_multicast:
            return f"{ip} is not a single host address"
        candidates = [ip]
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            candidates.append(ip.ipv4_mapped)
        for network in self.config.security.never_block:
            if any(c.version == network.version and c in network for c in candidates):
                return f"{ip} is in never_block ({network})"
        return ip

    def _recently_blocked(self, ip: str, at: float) -> bool:
        return actions.recently_blocked(self.db, ip, at - BLOCK_DEDUPE_SECONDS)

    def claim(self, action_id: int) -> _Job | None:
        """Decide and, when it is to run, claim the action (compare-and-swap with a lease)."""
        at = self.now()
        with write_tx(self.db):
            row = actions.load(self.db, action_id)
            if row is None or row["status"] != "pending":
                return None  # another tick has it
            incident = get_incident(self.db, row["incident_id"])
            if incident is None:
                return None
            decision, reason, job = self._prepare(row, incident, at)
            if decision == "skip":
                self._skip(row, incident, str(reason), at)
                return None
            if decision == "refuse":
                self._refuse(row, incident, str(reason), at)
                return None
            if decision == "defer":
                self.report(row, "deferred", reason)
                return None
            if decision == "budget":
                self._skip(row, incident, str(reason), at)
                if escalate(self.db, self.config, incident, at, str(reason), row["budget_key"]):
                    self.result.escalated.append(incident.id)
                return None
            if decision == "escalate":
                if self._finish(row, "succeeded", at) and escalate(
                    self.db, self.config, incident, at, str(reason)
                ):
                    self.result.escalated.append(incident.id)
                self.report(row, "succeeded", f"escalated: {reason}")
                return None
            assert job is not None
            lease = job.timeout * max(len(job.steps), 1) + LEASE_GRACE
            if job.queries:
                lease += job.query_timeout * len(job.queries)
            if job.verify_url:
                lease += HEALTH_TIMEOUT
            shown = [[self.mask(a) for a in argv] for argv in job.steps]
            command_json = (
                json.dumps(shown[0], ensure_ascii=False)
                if shown and row["kind"] != "diagnostics"
                else None
            )
            if not actions.claim(self.db, action_id, at, at + lease, command_json, job.target):
                return None
            if row["kind"] == "block_ip":
                self.blocks_left -= 1
            what = "; ".join(shlex.join(argv) for argv in shown) or row["kind"]
            if job.queries:
                what += f" (+{len(job.queries)} quer{'y' if len(job.queries) == 1 else 'ies'})"
            attempt = f" (attempt {job.attempt})" if row["kind"] == "command" else ""
            add_event(
                self.db,
                incident.id,
                at,
                "action_started",
                f"started {row['kind']}{attempt}: {what}"[:1000],
                data={"action_id": action_id, "argv": shown, "attempt": job.attempt},
            )
            if job.left_out:
                names = ", ".join(job.left_out[:20])
                more = len(job.left_out) - 20
                add_event(
                    self.db,
                    incident.id,
                    at,
                    "note",
                    (
                        f"{len(job.left_out)} label(s) left out of the command's environment"
                        f" (over the {LABEL_ENV_BUDGET // 1024} KiB INCIDENT_LABEL_* budget):"
                        f" {names}" + (f" and {more} more" if more > 0 else "")
                    )[:1000],
                    data={"action_id": action_id, "left_out": list(job.left_out[:200])},
                )
            return job

    def record_process(self, job: _Job, who: ProcessIdentity) -> None:
        """Note the process group a job's command leads, while this tick owns the action."""
        with write_tx(self.db):
            actions.record_process(
                self.db, job.action_id, job.started_at, who.pid, who.pgid, who.start
            )

    def record(self, job: _Job, outcome: _Outcome) -> None:
        """Write what a worker did, if this tick still owns the action."""
        at = self.now()
        shown_argv = tuple(tuple(self.mask(a) for a in r.argv) for r in outcome.commands)
        output = "\n".join(
            f"$ {shlex.join(argv)}\n{r.output}"
            for argv, r in zip(shown_argv, outcome.commands, strict=True)
        )
        last = outcome.commands[-1] if outcome.commands else None
        with write_tx(self.db):
            row = actions.load_running(self.db, job.action_id, job.started_at)
            incident = get_incident(self.db, job.incident_id)
            if row is None or incident is None:
                return  # the lease ran out and another tick settled it
            if job.kind == "diagnostics":
                self._record_diagnostics(row, incident, outcome, output, at)
                return
            failed = next((r for r in outcome.commands if not r.ok), None)
            if failed is not None:
                error = self.mask(failed.describe())
                if failed.error and not failed.timed_out:
                    self.result.problems += 1  # could not start
                tail = failed.output.strip().splitlines()[-1:] if failed.output.strip() else []
                self._finish(
                    row,
                    "failed",
                    at,
                    error=error,
                    exit_code=failed.exit_code,
                    output=output,
                    only_if="running",
                )
                add_event(
                    self.db,
                    incident.id,
                    at,
                    "action_failed",
                    f"{job.kind} failed: {error}"
                    + (f": {self.mask(tail[0])[:300]}" if tail else ""),
                    data={
                        "action_id": job.action_id,
                        "attempt": job.attempt,
                        "exit_code": failed.exit_code,
                    },
                )
                if job.kind == "command":
                    self._after_failure(row, incident, at)
                self.report(
                    row,
                    "failed",
                    error,
                    argv=shown_argv,
                    attempt=job.attempt,
                    exit_code=failed.exit_code,
                )
                return
            exit_code = last.exit_code if last else None
            verify = job.verify if job.kind == "command" else None
            if verify and not outcome.healthy:
                within = _number(verify, "within", 600.0)
                actions.start_verification(
                    self.db,
                    row["id"],
                    exit_code,
                    self.mask(output)[-MAX_STORED_OUTPUT:],
                    at + within,
                )
                what = self.mask(
                    f"{display_url(verify['http'])} to answer 2xx (now: {outcome.health_detail})"
                    if verify.get("http")
                    else "the incident's alerts to clear"
                )
                add_event(
                    self.db,
                    incident.id,
                    at,
                    "note",
                    f"command exited 0; waiting up to {format_duration(within)} for {what}",
                    data={"action_id": job.action_id, "attempt": job.attempt},
                )
                self.report(
                    row, "verifying", what, argv=shown_argv, attempt=job.attempt, exit_code=0
                )
                return
            self._finish(
                row, "succeeded", at, exit_code=exit_code, output=output, only_if="running"
            )
            if job.kind == "command":
                mark_fixed(self.db, incident.id, at)
            how = self.mask(
                f"; {display_url(verify['http'])} answered {outcome.health_detail}"
                if verify
                else ""
            )
            add_event(
                self.db,
                incident.id,
                at,
                "action_succeeded",
                f"{job.kind} succeeded (exit {exit_code}){how}",
                data={"action_id": job.action_id, "attempt": job.attempt, "exit_code": exit_code},
            )
            self.report(
                row,
                "succeeded",
                None,
                argv=shown_argv,
                attempt=job.attempt,
                exit_code=exit_code,
            )

    def _record_diagnostics(
        self,
        row: Mapping[str, Any],
        incident: Incident,
        outcome: _Outcome,
        output: str,
        at: float,
    ) -> None:
        commands: list[dict[str, Any]] = []
        errors: list[str] = []
        parts: list[str] = []
        for r in outcome.commands:
            argv = [self.mask(a) for a in r.argv]
            error = self.mask(r.error) if r.error else None
            commands.append(
                {
                    "argv": argv,
                    "exit_code": r.exit_code,
                    "error": error,
                    "output": self.mask(r.output)[-2000:],
                }
            )
            if error:
                errors.append(error)
            parts.append(f"{shlex.join(argv)} ({error or f'exit {r.exit_code}'})")
        queries: list[dict[str, Any]] = []
        for q in outcome.queries:
            text = self.mask(json.dumps(q, ensure_ascii=False, default=str))
            try:
                queries.append(json.loads(text))
            except ValueError:
                queries.append({"query": q.get("query"), "result": text[:MAX_QUERY_RESULT_CHARS]})
            if q.get("error"):
                errors.append(self.mask(str(q["error"])))
        if queries:
            parts.append(f"{len(queries)} quer{'y' if len(queries) == 1 else 'ies'}")
        status = "failed" if errors else "succeeded"
        if any(r.error and not r.timed_out for r in outcome.commands):
            self.result.problems += 1  # a diagnostic command could not start
        summary = ", ".join(parts)
        last_exit = outcome.commands[-1].exit_code if outcome.commands else None
        self._finish(
            row,
            status,
            at,
            error="; ".join(errors)[:2000] or None,
            exit_code=last_exit,
            output=output or json.dumps(queries, ensure_ascii=False)[-MAX_STORED_OUTPUT:],
            only_if="running",
        )
        add_event(
            self.db,
            incident.id,
            at,
            f"action_{status}",
            f"diagnostics: {summary}"[:1000],
            data={"action_id": row["id"], "commands": commands, "queries": queries},
        )
        self.report(
            row,
            status,
            "; ".join(errors) or summary,
            argv=tuple(tuple(c["argv"]) for c in commands),
            exit_code=last_exit,
        )

    # ------------------------------------------------------------------- dry run

    def preview(self, action_id: int) -> None:
        row = actions.load(self.db, action_id)
        if row is None:
            return
        incident = get_incident(self.db, row["incident_id"])
        if incident is None:
            return
        decision, reason, job = self._prepare(row, incident, self.start)
        argv = tuple(tuple(self.mask(a) for a in s) for s in job.steps) if job else ()
        if decision == "run" and row["kind"] == "block_ip":
            self.blocks_left -= 1
        outcome = {
            "run": "would-run",
            "skip": "would-skip",
            "refuse": "would-refuse",
            "defer": "deferred",
            "budget": "would-escalate",
            "escalate": "would-escalate",
        }[decision]
        if decision == "run" and job is not None and job.queries:
            reason = f"and {len(job.queries)} PromQL quer{'y' if len(job.queries) == 1 else 'ies'}"
        self.report(row, outcome, reason, argv=argv, attempt=int(row["attempts"]) + 1)


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
    tick = _Tick(db, config, now, incident_id, dry_run, runtime)
    tick.expire_leases()
    tick.check_verifications()
    due = tick.due_actions()
    if dry_run:
        for action_id in due:
            tick.preview(action_id)
        return tick.result
    queue = deque(due)
    limit = max(config.recovery.max_concurrent, 1)
    running: dict[Future[_Outcome], tuple[_Job, float]] = {}
    # Workers report here: a command's process group as soon as it starts (recorded at once, so
    # a later tick can stop it if this one is killed), then the job's end. One queue keeps
    # each job's reports in order and wakes this thread for either.
    events: SimpleQueue[tuple[_Job, ProcessIdentity] | Future[_Outcome]] = SimpleQueue()
    with ThreadPoolExecutor(max_workers=limit, thread_name_prefix="recover") as pool:
        while queue or running:
            while queue and len(running) < limit:
                if runtime is not None and runtime.expired:
                    runtime.leave(f"{len(queue)} action(s)")
                    queue.clear()
                    break
                job = tick.claim(queue.popleft())
                if job is not None:
                    crash_point("action-claimed")
                    future = pool.submit(_execute, job, partial(_started, events, job), runtime)
                    running[future] = (job, time.monotonic())
                    future.add_done_callback(events.put)
            if not running:
                continue
            event = events.get()
            if isinstance(event, tuple):
                tick.record_process(*event)
                crash_point("command-started")
            else:
                job, started = running.pop(event)
                if runtime is not None:
                    runtime.spend(
                        f"action {job.action_id} ({job.kind})", time.monotonic() - started
                    )
                tick.record(job, _safe_result(event, job))
    return tick.result


def _started(
    events: SimpleQueue[tuple[_Job, ProcessIdentity] | Future[_Outcome]],
    job: _Job,
    who: ProcessIdentity,
) -> None:
    events.put((job, who))


def _safe_result(future: Future[_Outcome], job: _Job) -> _Outcome:
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
        return _Outcome(commands=(failed,))
