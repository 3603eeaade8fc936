"""What the kinds that run programs share: argv from templates (label substitution, no
shell), the timeout, the command's environment, and the `Job` for a worker."""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from incident_cli.recovery.context import TickContext
from incident_cli.recovery.environment import Refused, base_env, command_env, render_argv
from incident_cli.recovery.kinds.base import Decision, Due, Job, Outcome
from incident_cli.recovery.process import CommandResult
from incident_cli.store.timeline import add_event


def templates_of(params: Mapping[str, Any]) -> list[list[str]]:
    """A command's or block's argv templates: `template`, then each of `then`."""
    templates = [list(params.get("template") or [])]
    templates += [list(t) for t in params.get("then") or []]
    return templates


def command_timeout(ctx: TickContext, params: Mapping[str, Any]) -> float:
    value = params.get("timeout")
    if isinstance(value, int | float) and value > 0:
        return float(value)
    return ctx.config.recovery.default_timeout


def run_decision(
    ctx: TickContext,
    due: Due,
    params: Mapping[str, Any],
    templates: Sequence[Sequence[str]],
    timeout: float,
    *,
    extra: Mapping[str, str] | None = None,
    extra_env: Mapping[str, str] | None = None,
    **fields: Any,
) -> Decision:
    """`run` with the worker's job: each template with the labels (and `extra`) substituted,
    the environment (labels as INCIDENT_LABEL_*, the action's id and attempt, `extra_env`),
    the config's directory as the working directory. `refuse`, naming the label, when a
    value is missing or unsafe."""
    row, incident, at = due
    steps = []
    for template in templates:
        try:
            steps.append(tuple(render_argv(template, incident.labels, extra)))
        except Refused as exc:
            return Decision("refuse", str(exc))
    environ = ctx.config.env or dict(os.environ)
    start_env = base_env(environ, ctx.config.recovery.env_passthrough, ctx.secrets)
    attempt = int(row["attempts"]) + 1
    env, left_out = command_env(
        start_env,
        incident,
        {
            "INCIDENT_ACTION_ID": str(row["id"]),
            "INCIDENT_ATTEMPT": str(attempt),
            **(extra_env or {}),
        },
    )
    job = Job(
        action_id=row["id"],
        incident_id=incident.id,
        kind=row["kind"],
        started_at=at,
        attempt=attempt,
        steps=tuple(steps),
        env=env,
        timeout=timeout,
        cwd=ctx.config.base_dir,
        query_timeout=timeout,
        verify=params.get("verify") or None,
        left_out=tuple(left_out),
        **fields,
    )
    return Decision.run(job)


def shown_commands(ctx: TickContext, outcome: Outcome) -> tuple[tuple[tuple[str, ...], ...], str]:
    """Each command's argv as shown (secrets masked), and their output as stored."""
    shown = tuple(tuple(ctx.mask(a) for a in r.argv) for r in outcome.commands)
    output = "\n".join(
        f"$ {shlex.join(argv)}\n{r.output}" for argv, r in zip(shown, outcome.commands, strict=True)
    )
    return shown, output


def record_failed(
    ctx: TickContext,
    due: Due,
    job: Job,
    failed: CommandResult,
    outcome: Outcome,
) -> None:
    """A step failed (or could not start): the action failed, with its error and output."""
    row, incident, at = due
    shown, output = shown_commands(ctx, outcome)
    error = ctx.mask(failed.describe())
    if failed.error and not failed.timed_out:
        ctx.result.problems += 1  # could not start
    tail = failed.output.strip().splitlines()[-1:] if failed.output.strip() else []
    ctx.finish(
        row,
        "failed",
        at,
        error=error,
        exit_code=failed.exit_code,
        output=output,
        only_if="running",
    )
    add_event(
        ctx.db,
        incident.id,
        at,
        "action_failed",
        f"{job.kind} failed: {error}" + (f": {ctx.mask(tail[0])[:300]}" if tail else ""),
        data={"action_id": job.action_id, "attempt": job.attempt, "exit_code": failed.exit_code},
    )
    ctx.report(row, "failed", error, argv=shown, attempt=job.attempt, exit_code=failed.exit_code)


def record_succeeded(
    ctx: TickContext,
    due: Due,
    job: Job,
    outcome: Outcome,
    how: str = "",
) -> None:
    """Every step exited 0: the action succeeded (`how` adds to the timeline's line)."""
    row, incident, at = due
    shown, output = shown_commands(ctx, outcome)
    last = outcome.commands[-1] if outcome.commands else None
    exit_code = last.exit_code if last else None
    ctx.finish(row, "succeeded", at, exit_code=exit_code, output=output, only_if="running")
    add_event(
        ctx.db,
        incident.id,
        at,
        "action_succeeded",
        f"{job.kind} succeeded (exit {exit_code}){ctx.mask(how)}",
        data={"action_id": job.action_id, "attempt": job.attempt, "exit_code": exit_code},
    )
    ctx.report(row, "succeeded", None, argv=shown, attempt=job.attempt, exit_code=exit_code)


def first_failure(outcome: Outcome) -> CommandResult | None:
    return next((r for r in outcome.commands if not r.ok), None)
