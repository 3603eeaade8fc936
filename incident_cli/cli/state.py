"""`incident state check|backup|copy`: the state's health, an online copy of it, and moving
a SQLite state into PostgreSQL."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from incident_cli.cli.app import app
from incident_cli.cli.context import emit_json, get_env
from incident_cli.errors import ExitStatus, IncidentError, UsageError

state_app = typer.Typer(
    help="The state DB: check it, back it up, copy it into PostgreSQL.",
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
    from incident_cli.store.connection import is_url
    from incident_cli.store.health import check_postgres, check_state_file

    env = get_env(ctx)
    if is_url(env.resolved_db_path()):
        report = check_postgres(env.db(), env.now())
    else:
        report = check_state_file(Path(env.resolved_db_path()), env.now())
    if as_json:
        emit_json({"db": report.path, "ok": report.ok, "problems": report.problems, **report.facts})
    else:
        for problem in report.problems:
            sys.stdout.write(f"problem: {problem}\n")
        if report.ok and not env.quiet:
            facts = report.facts
            age = facts.get("outbox_oldest_age_seconds")
            free = facts.get("disk_free_bytes")
            sys.stdout.write(
                f"ok: {report.path}: "
                + ("integrity ok, " if facts.get("integrity") == "ok" else "")
                + f"schema current, {facts.get('outbox_pending', 0)} notification(s) pending"
                + (f" (oldest {age:.0f} s)" if age is not None else "")
                + (f", {free // (1024 * 1024)} MiB free" if free is not None else "")
                + "\n"
            )
    if not report.ok:
        raise typer.Exit(int(ExitStatus.PARTIAL_FAILURE))


@state_app.command("backup")
def backup(
    ctx: typer.Context,
    path: Path = typer.Argument(..., metavar="PATH", help="The new file (never overwritten)."),
) -> None:
    """Write a consistent online copy of the state DB to PATH (mode 0600) while ticks run.

    Uses SQLite's backup API; PATH must not exist. Restore: see docs/state.md. A PostgreSQL
    state DB is backed up with the server's own tools (pg_dump)."""
    from incident_cli.store.connection import is_url
    from incident_cli.store.health import backup_state_file

    env = get_env(ctx)
    if is_url(env.resolved_db_path()):
        raise IncidentError(
            "state backup copies a SQLite state DB; back up PostgreSQL with its own tools:"
            f" pg_dump --format=custom --file {path} <the state.db URL>"
            " (docs/high-availability.md)"
        )
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


@state_app.command("copy")
def copy(
    ctx: typer.Context,
    to: str = typer.Option(
        ..., "--to", metavar="URL", help="An empty PostgreSQL database: postgresql://..."
    ),
) -> None:
    """Copy the SQLite state DB into an empty PostgreSQL database, every table and the id
    counters, then compare the row counts (exit 0 only when every table matches).

    Stop the ticks (cron) first: rows written meanwhile would not be copied. Then point
    state.db at the URL. The password may come from state.password_file."""
    from incident_cli.redact import mask_url
    from incident_cli.store.connection import is_url, open_db, open_postgres
    from incident_cli.store.copy import check_empty, copy_state

    env = get_env(ctx)
    source_path = env.resolved_db_path()
    if is_url(source_path):
        raise IncidentError("state copy reads a SQLite state DB: --db names a PostgreSQL URL")
    if not is_url(to):
        raise UsageError(f"--to: not a postgresql:// URL: {mask_url(to)}")
    if not Path(source_path).is_file():
        raise IncidentError(f"no state DB at {source_path}: nothing to copy")
    password = env.config().db_password
    target = open_postgres(to, password=password, migrate=False)
    try:
        check_empty(target)
        target.close()
        target = open_postgres(to, password=password)
        source = open_db(source_path)
        try:
            result = copy_state(source, target)
        finally:
            source.close()
    finally:
        target.close()
    out = sys.stdout
    out.write(f"copied {result.source} to {result.target}\n")
    for table, (src, dst) in result.counts.items():
        mark = "ok" if src == dst else "MISMATCH"
        out.write(f"  {table}: {dst} rows ({src} in the source) {mark}\n")
    ids = ", ".join(f"{t} {n}" for t, n in result.next_ids.items())
    out.write(f"  next ids: {ids}\n")
    if not result.ok:
        raise IncidentError("the row counts differ: the copy is not complete")
