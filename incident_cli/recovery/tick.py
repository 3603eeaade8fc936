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

import contextlib
import ipaddress
import json
import os
import re
import selectors
import shlex
import shutil
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from queue import SimpleQueue
from typing import Any

from incident_cli.config.model import Config, SourceConfig
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
from incident_cli.redact import redact
from incident_cli.runtime import TickRuntime
from incident_cli.store import actions, alerts, timeline
from incident_cli.store.database import Database, write_tx
from incident_cli.store.incidents import get_incident
from incident_cli.store.timeline import add_event
from incident_cli.times import format_duration, to_rfc3339

SAFE_VALUE = re.compile(r"[A-Za-z0-9_.:@/+=-]+")
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
MAX_SUBSTITUTED_CHARS = 1024  # a label value longer than this never becomes an argument
MAX_ENV_VALUE_BYTES = 32768  # execve refuses single strings over 128 KiB
LABEL_ENV_BUDGET = 65536  # bytes of INCIDENT_LABEL_* one command gets, in all (ARG_MAX is shared)
ENV_KEPT = ("PATH", "HOME", "LANG", "TZ")  # of the tick's environment, besides INCIDENT_*
MAX_CAPTURE_BYTES = 16384  # tail of one command's stdout+stderr kept in memory
MAX_STORED_OUTPUT = 8192  # tail kept in actions.output
MAX_QUERY_RESULT_CHARS = 4096  # one PromQL result attached to the timeline
MAX_QUERY_SERIES = 20
KILL_GRACE = 2.0  # seconds between SIGTERM and SIGKILL to a timed-out process group
DRAIN_SECONDS = 0.5  # a background grandchild may hold stdout open; stop reading after this
LEASE_GRACE = 60.0
HEALTH_TIMEOUT = 10.0
BLOCK_DEDUPE_SECONDS = 86400.0  # an IP blocked within this window is not blocked again


# --------------------------------------------------------------------------- label safety


class Refused(Exception):
    """A label value may not become part of a command line."""

    def __init__(self, label: str, reason: str) -> None:
        super().__init__(f"label {label!r} {reason}")
        self.label = label
        self.reason = reason


def unsafe_reason(value: str) -> str | None:
    """Why `value` may not be substituted into an argv item, or None when it may."""
    if not value:
        return "is empty"
    if len(value) > MAX_SUBSTITUTED_CHARS:
        return f"is {len(value)} characters long (at most {MAX_SUBSTITUTED_CHARS})"
    if value.startswith("-"):
        return "starts with '-' (it could be read as an option)"
    if SAFE_VALUE.fullmatch(value) is None:
        bad = next(ch for ch in value if SAFE_VALUE.fullmatch(ch) is None)
        return f"contains {bad!r}, which is not in [A-Za-z0-9_.:@/+=-]"
    return None


def render_argv(
    template: Sequence[str],
    labels: Mapping[str, str],
    extra: Mapping[str, str] | None = None,
) -> list[str]:
    """The argv with each `{name}` replaced by that label's value, each item staying one
    argument. Raises Refused when a value is missing or unsafe (see `unsafe_reason`)."""
    values = {**labels, **(extra or {})}

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise Refused(name, "is not set on the alert")
        problem = unsafe_reason(values[name])
        if problem is not None:
            raise Refused(name, problem)
        return values[name]

    return [PLACEHOLDER.sub(substitute, item) for item in template]


def env_name(label: str) -> str:
    return "INCIDENT_LABEL_" + re.sub(r"[^A-Z0-9_]", "_", label.upper())


def _env_value(value: str) -> str:
    # Environment strings cannot hold NUL or lone surrogates, and execve caps each one's size.
    clean = value.encode("utf-8", "replace").decode("utf-8").replace("\0", "")
    return clean.encode("utf-8")[:MAX_ENV_VALUE_BYTES].decode("utf-8", "ignore")


def _env_size(name: str, value: str) -> int:
    return len(name.encode("utf-8")) + len(value.encode("utf-8")) + 2  # "NAME=value\0"


def label_env(labels: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """Every label as INCIDENT_LABEL_<NAME>, within LABEL_ENV_BUDGET bytes in all: the smallest
    first, so that one huge label cannot crowd out the ordinary ones. Returns the variables and
    the names of the labels left out."""
    by_var: dict[str, tuple[str, str]] = {}
    # Two labels can sanitise to one name (`a-b`, `a_b`); sorted order makes the winner stable.
    for name, value in sorted(labels.items()):
        by_var[env_name(name)] = (name, _env_value(value))
    env: dict[str, str] = {}
    left_out: list[str] = []
    used = 0
    for var, (name, value) in sorted(
        by_var.items(), key=lambda i: (_env_size(i[0], i[1][1]), i[0])
    ):
        size = _env_size(var, value)
        if used + size > LABEL_ENV_BUDGET:
            left_out.append(name)
            continue
        env[var] = value
        used += size
    return env, sorted(left_out)


# Variables whose name says they hold a secret, or a URL (which may carry credentials).
_SECRET_NAME = re.compile(r"PASSW|TOKEN|SECRET|KEY|CREDENTIAL|AUTH|WEBHOOK|URL|DSN", re.I)
_URL_USERINFO = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*@")


def base_env(
    environ: Mapping[str, str], passthrough: Sequence[str], secrets: Sequence[str]
) -> dict[str, str]:
    """The environment a command starts from: PATH, HOME, LANG, TZ, the INCIDENT_* variables
    that hold no secret, and what `recovery.env_passthrough` names. Nothing else: the tick's
    own environment holds channel secrets (SLACK_WEBHOOK_URL, ...) a command has no use for."""
    env = {k: environ[k] for k in ENV_KEPT if k in environ}
    env.setdefault("PATH", os.defpath)
    for name, value in environ.items():
        if (
            name.startswith("INCIDENT_")
            and not name.startswith("INCIDENT_LABEL_")
            and _SECRET_NAME.search(name[len("INCIDENT_") :]) is None
            and _URL_USERINFO.search(value) is None
            and not any(secret in value for secret in secrets)
        ):
            env[name] = value
    env.update({k: environ[k] for k in passthrough if k in environ})
    return env


def command_env(
    base: Mapping[str, str], incident: Incident, extra: Mapping[str, str] | None = None
) -> tuple[dict[str, str], list[str]]:
    """The environment of a command: `base` (see base_env), plus the labels as
    INCIDENT_LABEL_<NAME> within the budget (see label_env) and the incident's identity.
    Returns it and the names of the labels left out."""
    env = {k: v for k, v in base.items() if not k.startswith("INCIDENT_LABEL_")}
    labels, left_out = label_env(incident.labels)
    env.update(labels)
    env.update(
        {
            "INCIDENT_ID": str(incident.id),
            "INCIDENT_RULE": incident.rule,
            "INCIDENT_SEVERITY": incident.severity,
            "INCIDENT_KEY": _env_value(incident.key),
        }
    )
    env.update(extra or {})
    return env, left_out


# --------------------------------------------------------------------------- running a command


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    exit_code: int | None
    output: str
    duration: float
    error: str | None = None  # could not start, or timed out
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and self.exit_code == 0

    def describe(self) -> str:
        if self.error:
            return self.error
        return f"exit {self.exit_code} after {self.duration:.1f}s"


class _Tail:
    """The last `limit` bytes of a stream, and how many came before them."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.total = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        self.data.extend(chunk)
        if len(self.data) > 2 * self.limit:
            del self.data[: len(self.data) - self.limit]

    def text(self) -> str:
        kept = bytes(self.data[-self.limit :])
        text = kept.decode("utf-8", "replace")
        dropped = self.total - len(kept)
        return f"…[{dropped} bytes before]\n{text}" if dropped else text


def _resolve_program(program: str, path: str, cwd: str | None) -> str | None:
    if "/" in program:
        candidate = os.path.join(cwd or os.getcwd(), program)
        return candidate if os.path.isfile(candidate) and os.access(candidate, os.X_OK) else None
    return shutil.which(program, path=path)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the whole process group, then SIGKILL whatever is left of it."""
    for sig, grace in ((signal.SIGTERM, KILL_GRACE), (signal.SIGKILL, 0.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        if grace:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(grace)
    proc.wait()


@dataclass(frozen=True)
class ProcessIdentity:
    """A command's process group, and enough to tell its leader from a later reuse of the pid."""

    pid: int
    pgid: int
    start: int | None  # the leader's start time in clock ticks since boot (Linux /proc)


def _proc_stat(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/<pid>/stat (state, ppid, pgrp, ...), or None when there is none."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()  # the name in (...) may hold anything


def process_start(pid: int) -> int | None:
    fields = _proc_stat(pid)
    return int(fields[19]) if fields and len(fields) > 19 else None


def is_same_process(who: ProcessIdentity) -> bool:
    """Whether who.pid is still that very process, alive (not a zombie), leading who.pgid."""
    if who.pid <= 1 or who.pgid <= 1:
        return False
    if os.path.isdir("/proc/self"):
        fields = _proc_stat(who.pid)
        return (
            fields is not None
            and len(fields) > 19
            and fields[0] != "Z"
            and int(fields[2]) == who.pgid
            and who.start is not None
            and int(fields[19]) == who.start
        )
    try:  # no /proc: the best we can say is that the pid still leads that group
        return os.getpgid(who.pid) == who.pgid
    except OSError:
        return False


def _group_alive(pgid: int) -> bool:
    """Whether any live (non-zombie) process is left in the group."""
    if os.path.isdir("/proc/self"):
        for name in os.listdir("/proc"):
            if name.isdigit():
                fields = _proc_stat(int(name))
                if fields and len(fields) > 2 and fields[0] != "Z" and int(fields[2]) == pgid:
                    return True
        return False
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_orphan(who: ProcessIdentity, grace: float = KILL_GRACE) -> bool | None:
    """Stop the process group of a command whose tick died: SIGTERM, then SIGKILL.

    Only when its leader is still the process that was started (same pid, same start time, not
    a zombie): a command that finished leaves its background children alone, as `run_command`
    does, and a reused pid is someone else's. None: there was nothing of ours to stop;
    True: stopped; False: the group is still alive."""
    if not is_same_process(who):
        return None
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(who.pgid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not _group_alive(who.pgid):
                return True
            time.sleep(0.05)
    return not _group_alive(who.pgid)


def _read_into(fd: int, tail: _Tail) -> bool:
    """Read what is available; True at end of file."""
    try:
        chunk = os.read(fd, 65536)
    except BlockingIOError:
        return False
    if not chunk:
        return True
    tail.add(chunk)
    return False


def run_command(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    timeout: float,
    cwd: str | None = None,
    on_start: Callable[[ProcessIdentity], None] | None = None,
) -> CommandResult:
    """Run argv (never through a shell) in its own session; on timeout kill its whole process
    group. Keeps the tail of stdout+stderr. `on_start` learns the group as soon as it exists,
    so that the group can be stopped by a later tick if this one dies (see `stop_orphan`).

    A command that exits normally leaves its background children alone (a restart script may
    start the service itself); we stop reading their output shortly after it exits. Only a
    grandchild that starts a session of its own escapes the kill on timeout."""
    argv = tuple(argv)
    started = time.monotonic()
    program = argv[0]
    resolved = _resolve_program(program, env.get("PATH", os.defpath), cwd)
    if resolved is None:
        where = "is not an executable file" if "/" in program else "was not found on PATH"
        return CommandResult(argv, None, "", 0.0, error=f"{program}: {where}")
    try:
        proc = subprocess.Popen(
            list(argv),
            executable=resolved,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
        )
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return CommandResult(argv, None, "", 0.0, error=f"{program}: cannot start: {reason}")
    if on_start is not None:
        # start_new_session: the child leads its own process group, pgid == pid.
        on_start(ProcessIdentity(proc.pid, proc.pid, process_start(proc.pid)))
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    tail = _Tail(MAX_CAPTURE_BYTES)
    deadline = started + timeout
    timed_out = eof = False
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while proc.poll() is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            if eof:  # stdout closed but still running: just wait for it
                try:
                    proc.wait(remaining)
                except subprocess.TimeoutExpired:
                    timed_out = True
                break
            if selector.select(min(remaining, 0.2)):
                eof = _read_into(fd, tail)
        if timed_out:
            _kill_group(proc)
        drain_until = time.monotonic() + DRAIN_SECONDS
        while not eof and time.monotonic() < drain_until:
            if selector.select(0.05):
                eof = _read_into(fd, tail)
    proc.stdout.close()
    duration = time.monotonic() - started
    if timed_out:
        return CommandResult(
            argv,
            proc.returncode,
            tail.text(),
            duration,
            error=f"{program}: timed out after {format_duration(timeout)}; process group killed",
            timed_out=True,
        )
    return CommandResult(argv, proc.returncode, tail.text(), duration)


# --------------------------------------------------------------------------- HTTP


def display_url(url: str) -> str:
    """The URL without any user:password@ part, for messages."""
    return re.sub(r"^(https?://)[^/@]*@", r"\1", url)


def prometheus_source(config: Config, name: str | None) -> SourceConfig | None:
    if name:
        return config.sources.get(name)
    return next((s for s in config.sources.values() if s.type == "prometheus"), None)


def _bounded_result(data: Any) -> Any:
    """A PromQL result cut down to a few series and a few KiB, for the timeline."""
    if not isinstance(data, dict):
        return {"unexpected": str(data)[:200]}
    kind = data.get("resultType")
    result = data.get("result")
    if kind in ("vector", "matrix") and isinstance(result, list):
        series = []
        for item in result[:MAX_QUERY_SERIES]:
            if not isinstance(item, dict):
                continue
            entry: dict[str, Any] = {"metric": item.get("metric")}
            if kind == "vector":
                entry["value"] = item.get("value")
            else:
                values = item.get("values")
                entry["values"] = values[-5:] if isinstance(values, list) else None
            series.append(entry)
        out: dict[str, Any] = {"result_type": kind, "series": series, "total": len(result)}
        while len(json.dumps(out, default=str)) > MAX_QUERY_RESULT_CHARS and out["series"]:
            out["series"] = out["series"][: len(out["series"]) // 2]
        return out
    return {"result_type": kind, "value": str(result)[:MAX_QUERY_RESULT_CHARS]}


def run_query(source: SourceConfig, query: str, timeout: float) -> dict[str, Any]:
    """One PromQL instant query: {"query", "result"} or {"query", "error"}. Never raises."""
    from incident_cli.errors import SourceError
    from incident_cli.intake.sources import prometheus_query

    try:
        data = prometheus_query(source, query, timeout)
    except SourceError as exc:
        return {"query": query, "error": exc.message}
    return {"query": query, "result": _bounded_result(data)}


# --------------------------------------------------------------------------- escalation


def budget_escalated_at(
    db: Database, incident_id: int, budget_key: str, since: float
) -> float | None:
    """When the incident last escalated for this spent budget, if that was at or after
    `since` (the start of the budget's cooldown window). A reopen clears `escalated_at`, but
    while the same budget stays spent the incident has already been escalated for it."""
    return timeline.last_budget_escalation(db, incident_id, budget_key, since)


# --------------------------------------------------------------------------- the tick


@dataclass(frozen=True)
class ActionReport:
    """One thing `recover` did (or, with --dry-run, would do) with an action."""

    action_id: int
    incident_id: int
    kind: str
    outcome: str  # succeeded failed refused skipped verifying waiting deferred | would-*
    detail: str | None = None
    argv: tuple[tuple[str, ...], ...] = ()
    attempt: int | None = None
    exit_code: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "action_id": self.action_id,
            "incident_id": self.incident_id,
            "kind": self.kind,
            "outcome": self.outcome,
            "detail": self.detail,
            "argv": [list(a) for a in self.argv],
            "attempt": self.attempt,
            "exit_code": self.exit_code,
        }


@dataclass
class RecoverResult:
    dry_run: bool = False
    actions: list[ActionReport] = field(default_factory=list)
    escalated: list[int] = field(default_factory=list)
    # actions that could not start: refused, program missing → exit 1
    problems: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "actions": [a.to_json() for a in self.actions],
            "escalated": self.escalated,
            "problems": self.problems,
        }


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
                    future = pool.submit(_execute, job, partial(_started, events, job), runtime)
                    running[future] = (job, time.monotonic())
                    future.add_done_callback(events.put)
            if not running:
                continue
            event = events.get()
            if isinstance(event, tuple):
                tick.record_process(*event)
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
