"""`incident followup add|list|done`: post-incident follow-up actions, tracked until done."""

from __future__ import annotations

import sys

import typer

from incident_cli.cli.app import app
from incident_cli.cli.context import emit_json, get_env
from incident_cli.cli.incidents import _default_actor, _text_arg
from incident_cli.errors import UsageError

followup_app = typer.Typer(
    help="Post-incident follow-up actions, tracked until done.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)
app.add_typer(followup_app, name="followup")


@followup_app.command("add")
def add(
    ctx: typer.Context,
    incident_id: int = typer.Argument(..., metavar="ID", help="The incident it follows up."),
    text: str = typer.Argument(..., metavar="TEXT", help="What is to be done."),
    owner: str = typer.Option(None, "--owner", help="Who does it.", show_default=False),
    due: str = typer.Option(
        None, "--due", help="Due in DURATION from now (7d, 2w, 36h).", show_default=False
    ),
    by: str = typer.Option(None, "--by", help="Who adds it (default: the OS user)."),
) -> None:
    """Add a follow-up to an incident (a timeline event); prints its id."""
    from incident_cli.lifecycle.followups import add_followup
    from incident_cli.times import parse_duration

    env = get_env(ctx)
    now = env.now()
    due_at = None
    if due is not None:
        try:
            due_at = now + parse_duration(due)
        except ValueError as exc:
            raise UsageError(f"--due: {exc}") from None
    body = _text_arg(text, "TEXT") or ""
    if not body.strip():
        raise UsageError("TEXT must not be empty")
    owner_name = _text_arg(owner, "--owner")
    if owner_name is not None and not owner_name.strip():
        raise UsageError("--owner needs a name")
    who = (_text_arg(by, "--by") or _default_actor())[:200]
    followup = add_followup(
        env.db(),
        incident_id,
        body,
        owner=owner_name[:200] if owner_name else None,
        due_at=due_at,
        by=who,
        now=now,
    )
    if not env.quiet:
        sys.stdout.write(f"follow-up {followup.id} added to incident {incident_id}\n")


@followup_app.command("list")
def list_(
    ctx: typer.Context,
    open_only: bool = typer.Option(False, "--open", help="Only those not done yet."),
    overdue: bool = typer.Option(False, "--overdue", help="Only those past their due time."),
    as_json: bool = typer.Option(False, "--json", help="Plain JSON on stdout."),
) -> None:
    """Follow-ups, oldest first: id, incident, status, owner, due, text."""
    from incident_cli.display import printable
    from incident_cli.lifecycle.followups import list_followups
    from incident_cli.times import to_rfc3339

    env = get_env(ctx)
    now = env.now()
    items = list_followups(env.db(), now, open_only=open_only, overdue_only=overdue)
    if as_json:
        emit_json([f.to_json(now) for f in items])
        return
    if env.quiet:
        return
    if not items:
        sys.stdout.write("no follow-ups\n")
        return
    for f in items:
        status = "done" if f.done_at is not None else ("OVERDUE" if f.overdue(now) else "open")
        due = to_rfc3339(f.due_at) or "-"
        line = f"{f.id:<5} #{f.incident_id:<5} {status:<8} {f.owner or '-':<12} {due}  {f.text}"
        sys.stdout.write(printable(line) + "\n")


@followup_app.command("done")
def done(
    ctx: typer.Context,
    followup_id: int = typer.Argument(..., metavar="FID", help="The follow-up's id."),
    by: str = typer.Option(None, "--by", help="Who did it (default: the OS user)."),
    note: str = typer.Option(None, "--note", help="A note for the timeline.", show_default=False),
) -> None:
    """Mark a follow-up done (a timeline event of its incident)."""
    from incident_cli.lifecycle.followups import complete_followup

    env = get_env(ctx)
    who = (_text_arg(by, "--by") or _default_actor())[:200]
    followup = complete_followup(
        env.db(), followup_id, by=who, note=_text_arg(note, "--note"), now=env.now()
    )
    if not env.quiet:
        sys.stdout.write(f"follow-up {followup.id} done by {who}\n")
