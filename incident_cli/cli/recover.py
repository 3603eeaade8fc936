"""The `incident recover` command: run the recovery, diagnostic, block and escalation actions
that are due."""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING

import typer

from incident_cli.cli.app import app
from incident_cli.cli.context import (
    console,
    emit_json,
    get_env,
    max_runtime_option,
    say,
    set_max_runtime,
    tick,
)
from incident_cli.display import printable
from incident_cli.errors import worst_exit

if TYPE_CHECKING:
    from incident_cli.recovery.report import ActionReport


def _line(report: ActionReport) -> str:
    argv = "; ".join(shlex.join(a) for a in report.argv)
    parts = [f"#{report.action_id} (incident {report.incident_id}) {report.kind}: {report.outcome}"]
    if argv:
        parts.append(argv)
    if report.detail:
        parts.append(f"— {report.detail}")
    return printable(" ".join(parts))


@app.command()
def recover(
    ctx: typer.Context,
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="Print what would run (argv after label substitution); change nothing.",
    ),
    incident: int = typer.Option(
        None,
        "--incident",
        min=1,
        metavar="ID",
        help="Only the actions of this incident.",
        show_default=False,
    ),
    as_json: bool = typer.Option(False, "--json", help="Plain JSON on stdout."),
    max_runtime: str | None = max_runtime_option(),
) -> None:
    """Run the actions that are due: fixes, diagnostics, IP blocks, escalations.

    Verifies fixes across ticks, backs off between attempts, and escalates once when a fix's
    attempt budget is spent. Exit 1 when an action was refused or could not start.
    """
    from incident_cli.outcomes import recover_stage
    from incident_cli.recovery.tick import recover_due

    env = get_env(ctx)
    set_max_runtime(env, max_runtime)
    if dry_run:
        # Changes nothing, not even the heartbeat: a manual dry run must not hide a stale
        # `recover` from `incident status`.
        result = recover_due(env.db(), env.config(), env.now(), dry_run=True, incident_id=incident)
        codes: list[int] = []
    else:
        with tick(env, "recover") as record:
            result = recover_due(
                env.db(), env.config(), env.now(), incident_id=incident, runtime=env.runtime
            )
            stage = recover_stage(result)
            record.add(stage)
        say(env, stage)  # cron mails this: which actions could not start
        codes = record.codes
    if as_json:
        emit_json(result.to_json())
    elif dry_run or env.verbose:
        out = console()
        if not result.actions:
            out.print("recover: nothing due", markup=False, soft_wrap=True)
        for report in result.actions:
            out.print(_line(report), markup=False, soft_wrap=True)
    worst = worst_exit(codes)
    if worst:
        raise typer.Exit(worst)
