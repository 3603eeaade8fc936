"""The `incident sync` command: read acks and resolves back from PagerDuty and Slack."""

from __future__ import annotations

import sys

import typer

from incident_cli.cli.app import app
from incident_cli.cli.context import emit_json, get_env, max_runtime_option, set_max_runtime, tick
from incident_cli.display import printable
from incident_cli.errors import ExitStatus


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
    from incident_cli.redact import redact

    env = get_env(ctx)
    set_max_runtime(env, max_runtime)
    with tick(env, "sync") as codes:
        result = sync_once(env.db(), env.config(), env.now(), runtime=env.runtime)
        if result.errors:
            codes.append(int(ExitStatus.TEMPFAIL))
    if not env.quiet or result.errors:
        for line in result.errors + ([] if env.quiet else result.notes):
            sys.stderr.write(f"incident: sync: {printable(redact(line, env.secrets()))}\n")
    if as_json:
        emit_json(result.to_json())
    elif env.verbose:
        sys.stdout.write(
            f"sync: checked {result.checked}, acknowledged {len(result.acknowledged)},"
            f" resolved {len(result.resolved)}\n"
        )
    worst = max(codes, default=0)
    if worst:
        raise typer.Exit(worst)
