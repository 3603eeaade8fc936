"""`incident state check|backup`: the state file's health and an online copy of it."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from incident_cli.cli.app import app
from incident_cli.cli.context import emit_json, get_env
from incident_cli.errors import ExitStatus, IncidentError

state_app = typer.Typer(
    help="The state file: check it, back it up.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)
app.add_typer(state_app, name="state")


@state_app.command("check")
def check(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Plain JSON on stdout."),
) -> None:
    """Check the state DB without changing it: integrity, schema version, orphaned rows, stuck
    claims, outbox order and backlog, disk space. Exit 0 when healthy, 1 when not."""
    from incident_cli.store.health import check_state_file

    env = get_env(ctx)
    path = Path(env.resolved_db_path())
    report = check_state_file(path, env.now())
    if as_json:
        emit_json({"db": report.path, "ok": report.ok, "problems": report.problems, **report.facts})
    else:
        for problem in report.problems:
            sys.stdout.write(f"problem: {problem}\n")
        if report.ok and not env.quiet:
            facts = report.facts
            age = facts.get("outbox_oldest_age_seconds")
            sys.stdout.write(
                f"ok: {report.path}: integrity ok, schema current,"
                f" {facts.get('outbox_pending', 0)} notification(s) pending"
                + (f" (oldest {age:.0f} s)" if age is not None else "")
                + f", {facts.get('disk_free_bytes', 0) // (1024 * 1024)} MiB free\n"
            )
    if not report.ok:
        raise typer.Exit(int(ExitStatus.PARTIAL_FAILURE))


@state_app.command("backup")
def backup(
    ctx: typer.Context,
    path: Path = typer.Argument(..., metavar="PATH", help="The new file (never overwritten)."),
) -> None:
    """Write a consistent online copy of the state DB to PATH (mode 0600) while ticks run.

    Uses SQLite's backup API; PATH must not exist. Restore: see docs/state.md."""
    from incident_cli.store.health import backup_state_file

    env = get_env(ctx)
    source = Path(env.resolved_db_path())
    try:
        size = backup_state_file(source, path)
    except FileExistsError:
        raise IncidentError(f"{path} exists: a backup never overwrites a file") from None
    except FileNotFoundError as exc:
        raise IncidentError(f"cannot back up: {exc.strerror}: {exc.filename}") from None
    except OSError as exc:
        import errno

        if exc.errno == errno.ELOOP:
            raise IncidentError(f"{path} is a symbolic link: a backup never follows one") from None
        raise IncidentError(f"cannot write {path}: {exc.strerror}") from None
    if not env.quiet:
        sys.stdout.write(f"backed up {source} to {path} ({size} bytes)\n")
