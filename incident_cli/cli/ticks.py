"""`incident run`'s work, without Typer: the Typer command and the cron fast path
(`cli/entry.py`) both call `run_command`."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from incident_cli.cli.context import (
    Env,
    duration_option,
    emit_json,
    held_lock,
    say,
    set_max_runtime,
    tick,
)
from incident_cli.errors import worst_exit

if TYPE_CHECKING:
    from incident_cli.runtime import Schedule


def run_command(
    env: Env,
    *,
    dry_run: bool = False,
    as_json: bool = False,
    max_runtime: str | None = None,
    every: str | None = None,
    span: str | None = None,
) -> int:
    """One whole tick (or, with --every and --for, several under one lock): the exit code."""
    from incident_cli.redact import redact
    from incident_cli.stages import StageResult, run_tick
    from incident_cli.store.status import record_heartbeat

    set_max_runtime(env, max_runtime)
    schedule = _schedule(env, every, span)
    db = env.db()

    def stage_done(stage: StageResult) -> None:
        # Each stage leaves its own heartbeat too: `status` and the metrics watch them.
        if not dry_run:
            error = stage.error_text()
            error = redact(error, env.secrets()) if error else None
            record_heartbeat(
                db,
                stage.name,
                stage.started_at,
                stage.finished_at,
                stage.code,
                error,
                env.config().host,
            )
            env.tick_stages.append(
                {"stage": stage.name, "exit_code": stage.code, "summary": stage.summary}
            )
        say(env, stage, prefix=f"{stage.name}: ")
        if (env.verbose or dry_run) and not as_json and not env.quiet:
            prefix = "would have: " if dry_run else ""
            sys.stdout.write(f"{stage.name}: {prefix}{stage.summary}\n")

    def one_tick(lock: bool) -> tuple[int, list[StageResult]]:
        with tick(env, "run", heartbeat=not dry_run, lock=lock) as record:
            results = run_tick(
                db,
                env.config(),
                env.clock,
                dry_run=dry_run,
                on_stage_done=stage_done,
                runtime=env.runtime,
            )
            record.codes.extend(stage.code for stage in results)
        return worst_exit(record.codes), results

    if schedule is None:
        worst, results = one_tick(lock=True)
        if as_json:
            emit_json({"dry_run": dry_run, "stages": [stage.to_json() for stage in results]})
    else:
        worst = _run_ticks(env, schedule, one_tick, dry_run=dry_run, as_json=as_json)
    return worst


def _schedule(env: Env, every: str | None, span: str | None) -> Schedule | None:
    """--every/--for checked: both or neither, --every > 0, --for ≥ --every, and each tick's
    --max-runtime at most --every (the default is cut to it; a longer one is a usage error)."""
    from incident_cli.errors import UsageError
    from incident_cli.runtime import DEFAULT_MAX_RUNTIME, Schedule

    if every is None and span is None:
        return None
    if every is None or span is None:
        raise UsageError("--every and --for go together, e.g. --every 5s --for 55s")
    interval, length = duration_option("--every", every), duration_option("--for", span)
    if length < interval:
        raise UsageError(f"--for {span} is shorter than --every {every}")
    if env.max_runtime is None:
        env.max_runtime = min(DEFAULT_MAX_RUNTIME, interval)
    elif env.max_runtime > interval:
        raise UsageError(
            f"--max-runtime {env.max_runtime:g}s is longer than --every {every}: a tick must"
            " end before the next one is due"
        )
    return Schedule(interval, length)


def _run_ticks(
    env: Env,
    schedule: Schedule,
    one_tick: Callable[[bool], tuple[int, list[Any]]],
    *,
    dry_run: bool,
    as_json: bool,
) -> int:
    """The ticks of `run --every`, under one lock held from the first to the last."""
    from incident_cli.runtime import repeat_exit

    codes: list[int] = []
    ticks: list[dict[str, Any]] = []
    with held_lock(env), schedule:
        for _ in schedule.ticks():
            code, results = one_tick(False)
            codes.append(code)
            ticks.append({"exit_code": code, "stages": [stage.to_json() for stage in results]})
    if schedule.stopped_by is not None and env.verbose:
        sys.stderr.write(
            f"incident: run: stopped by {schedule.stopped_by} after {len(codes)} tick(s)\n"
        )
    if as_json:
        emit_json({"dry_run": dry_run, "ticks": ticks})
    return repeat_exit(codes)
