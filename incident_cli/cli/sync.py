"""The `incident sync` command: read acks and resolves back from PagerDuty and Slack."""

from __future__ import annotations

import sys

import typer

from incident_cli.cli.app import app
from incident_cli.cli.context import (
    emit_json,
    get_env,
    max_runtime_option,
    say,
    set_max_runtime,
    tick,
)
from incident_cli.errors import worst_exit


@app.command()
def sync(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Plain JSON on stdout."),
    max_runtime: str | None = max_runtime_option(),
) -> None:
    """Read acks and resolves back: PagerDuty incidents (channels with `sync: true`) and Slack
    reactions (channels with `bot_token` and `allowed_users`).

    Acknowledged there (or :eyes:) is acknowledged here; resolved there (or
    :white_check_mark:) is resolved here by hand. Only reads those APIs. Exit 75 when one
    cannot be read (down, garbage, rate limited).
    """
    from incident_cli.intake.sync import sync_once
    from incident_cli.outcomes import sync_stage

    env = get_env(ctx)
    set_max_runtime(env, max_runtime)
    with tick(env, "sync") as record:
        result = sync_once(env.db(), env.config(), env.now(), runtime=env.runtime)
        stage = sync_stage(result)
        record.add(stage)
    say(env, stage, prefix="sync: ")
    if as_json:
        emit_json(result.to_json())
    elif env.verbose:
        sys.stdout.write(f"sync: {stage.summary}\n")
    worst = worst_exit(record.codes)
    if worst:
        raise typer.Exit(worst)
