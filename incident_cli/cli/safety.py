"""`incident approve`, `incident deny` (approval gates) and `incident breaker reset` (the
blast-radius breaker)."""

from __future__ import annotations

import sys

import typer

from incident_cli.cli.app import app
from incident_cli.cli.context import get_env
from incident_cli.cli.incidents import _text_arg
from incident_cli.display import printable
from incident_cli.errors import UsageError

ID_HELP = "The action awaiting approval, or its incident (action:N or incident:N when both)."

breaker_app = typer.Typer(
    help="The recovery breaker: no command or block_ip action starts while it is open.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)
app.add_typer(breaker_app, name="breaker")


def _name(by: str) -> str:
    return (_text_arg(by, "--by") or "")[:200]


def _note(note: str) -> str:
    text = _text_arg(note, "--note") or ""
    if not text.strip():
        raise UsageError("--note must not be empty")
    return text[:1000]


@app.command()
def approve(
    ctx: typer.Context,
    ident: str = typer.Argument(..., metavar="ID", help=ID_HELP),
    by: str = typer.Option(..., "--by", help="Who approves (recorded in the timeline)."),
) -> None:
    """Approve a recovery command awaiting approval: it runs at the next `recover`."""
    from incident_cli.recovery.approval import approve as approve_actions

    env = get_env(ctx)
    who = _name(by)
    done = approve_actions(env.db(), ident, who, env.now())
    if not env.quiet:
        for action_id in done:
            sys.stdout.write(f"action {action_id} approved by {printable(who)}\n")


@app.command()
def deny(
    ctx: typer.Context,
    ident: str = typer.Argument(..., metavar="ID", help=ID_HELP),
    by: str = typer.Option(..., "--by", help="Who denies (recorded in the timeline)."),
    note: str = typer.Option(..., "--note", help="Why (recorded in the timeline)."),
) -> None:
    """Deny a recovery command awaiting approval: it never runs (status skipped)."""
    from incident_cli.recovery.approval import deny as deny_actions

    env = get_env(ctx)
    who, why = _name(by), _note(note)
    done = deny_actions(env.db(), ident, who, why, env.now())
    if not env.quiet:
        for action_id in done:
            sys.stdout.write(f"action {action_id} denied by {printable(who)}\n")


@breaker_app.command("reset")
def reset(
    ctx: typer.Context,
    by: str = typer.Option(..., "--by", help="Who closes it."),
    note: str = typer.Option(..., "--note", help="Why it is safe to go on."),
) -> None:
    """Close the recovery breaker; a new window starts (earlier actions no longer count)."""
    from incident_cli.recovery.breaker import reset as reset_breaker

    env = get_env(ctx)
    who, why = _name(by), _note(note)
    closed = reset_breaker(env.db(), env.now(), who, why)
    if not env.quiet:
        sys.stdout.write(
            f"recovery breaker closed by {printable(who)}\n"
            if closed
            else "recovery breaker was not open; nothing changed\n"
        )
