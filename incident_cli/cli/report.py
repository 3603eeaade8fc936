"""Commands that look back and at the tool itself: report, metrics, status, archive."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import typer

from incident_cli.cli.app import app
from incident_cli.cli.context import UNFOLDED_WIDTH, Env, console, emit_json, get_env, tick
from incident_cli.display import json_text, printable
from incident_cli.errors import ExitStatus, UsageError

FORMATS = ("table", "json", "markdown", "html")


def _deliver(env: Env, text: str, output: Path | None) -> None:
    """Print, or write FILE atomically. Secrets from the config are masked either way."""
    from incident_cli.redact import redact

    text = redact(text, env.secrets())
    if output is None:
        sys.stdout.write(text)
        return
    from incident_cli.reporting.metrics import write_file_atomically

    write_file_atomically(output, text.encode("utf-8"), None)
    if env.verbose:
        sys.stderr.write(f"incident: wrote {output}\n")


@app.command()
def report(
    ctx: typer.Context,
    hours: float = typer.Argument(
        24.0, metavar="[HOURS]", help="Look at incidents opened in the last HOURS (default 24)."
    ),
    fmt: str = typer.Option(
        "table", "--format", "-f", help="table, json, markdown or html.", show_default=True
    ),
    output: Path = typer.Option(
        None,
        "--output",
        "-o",
        metavar="FILE",
        help="Write to FILE (atomically) instead of stdout.",
        show_default=False,
    ),
    incident_id: int = typer.Option(
        None,
        "--incident",
        metavar="ID",
        help="A post-incident review draft (markdown) for incident ID instead.",
        show_default=False,
    ),
    as_json: bool = typer.Option(False, "--json", help="Same as --format json."),
    top: int = typer.Option(10, "--top", min=1, help="How many top alerts / flapping to list."),
    quiet_if_empty: bool = typer.Option(
        False,
        "--quiet-if-empty",
        help="Print (or write) nothing when no incident was opened in the window: an hourly"
        " cron line then mails only the hours that had incidents.",
    ),
) -> None:
    """Post-incident metrics over the incidents opened in the last HOURS.

    Counts, MTTD/MTTA/MTTR (mean, median, p90), recovery success, escalation and false-positive
    rates, notification delivery, by severity, top alerts, flapping incidents. A mean or rate
    over nothing is null (— for people), never 0.
    """
    env = get_env(ctx)
    if as_json:
        fmt = "json"
    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if not math.isfinite(hours) or hours <= 0:
        raise UsageError("HOURS must be a positive number")

    if incident_id is not None:
        if quiet_if_empty:
            raise UsageError("--quiet-if-empty is for the window report, not --incident")
        if fmt not in ("table", "markdown"):
            raise UsageError(
                "--incident writes a markdown review draft (use `show --json` for JSON)"
            )
        from incident_cli.reporting.review import review_markdown

        _deliver(env, review_markdown(env.db(), incident_id, env.now()), output)
        return

    from incident_cli.reporting.report import build_report

    rep = build_report(env.db(), env.now(), hours, top=top)
    if quiet_if_empty and rep.opened == 0:
        return
    if fmt == "json":
        text = json_text(_report_json(rep)) + "\n"
    elif fmt == "markdown":
        from incident_cli.reporting.render_markdown import render_markdown

        text = render_markdown(rep)
    elif fmt == "html":
        from incident_cli.reporting.render_html import render_html

        text = render_html(rep)
    else:
        if output is None and env.quiet:
            return
        text = _table_text(rep, to_terminal=output is None)
    _deliver(env, text, output)


def _table_text(rep: Any, *, to_terminal: bool) -> str:
    """The rich tables as text (so secrets can be masked), coloured only for a terminal."""
    from io import StringIO

    from rich.console import Console

    from incident_cli.reporting.render_table import render_table

    buffer = StringIO()
    if to_terminal:
        real = console()
        out = Console(
            file=buffer,
            force_terminal=real.is_terminal,
            color_system=real.color_system,
            no_color=real.no_color,
            width=real.width,
            highlight=False,
            emoji=False,
        )
    else:
        out = Console(file=buffer, width=UNFOLDED_WIDTH, no_color=True, highlight=False)
    render_table(rep, out)
    return buffer.getvalue()


def _report_json(rep: Any) -> dict[str, Any]:
    from incident_cli.reporting.report import report_json

    return report_json(rep)


@app.command()
def metrics(
    ctx: typer.Context,
    textfile: Path = typer.Option(
        None,
        "--textfile",
        metavar="PATH",
        help="Write to PATH atomically for node_exporter's textfile collector (e.g."
        " /var/lib/node_exporter/textfile_collector/incident.prom).",
        show_default=False,
    ),
) -> None:
    """Prometheus exposition of the incident metrics (for node_exporter's textfile collector)."""
    from incident_cli.reporting.metrics import exposition, write_file_atomically

    env = get_env(ctx)
    if textfile is not None and (str(textfile) in ("", ".") or textfile.is_dir()):
        raise UsageError(f"--textfile needs a file path, not {str(textfile)!r}")
    if textfile is None:
        sys.stdout.write(exposition(env.db(), env.now(), env.resolved_db_path()).decode("utf-8"))
        return
    # Written from cron: leave a heartbeat so `status` shows when it last ran. No tick lock:
    # reading must not wait for (or block) a tick.
    with tick(env, "metrics", lock=False):
        data = exposition(env.db(), env.now(), env.resolved_db_path())
        write_file_atomically(textfile, data, 0o644)
    if env.verbose:
        sys.stderr.write(f"incident: wrote {textfile}\n")


@app.command()
def status(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Plain JSON on stdout."),
    max_age: str = typer.Option(
        "5m",
        "--max-age",
        help="A heartbeat older than this (or no success for this long) is stale: exit 1.",
    ),
    expect: list[str] = typer.Option(
        None,
        "--expect",
        metavar="COMMAND",
        help="Commands whose heartbeat must be fresh (repeatable). Default: whichever ran"
        " last of `run` and the tick stages (poll, detect-anomalies, recover, notify); for"
        " the stages, each one that has ever run.",
        show_default=False,
    ),
) -> None:
    """Health of the tool itself; exit 1 when a heartbeat is stale or a source keeps failing.

    Shows each command's last run and result, each host's last tick (and which host ticked
    last), each source's reachability, open incidents, pending actions and notifications, and
    the DB size.
    """
    from incident_cli.reporting.health import check_health, health_json
    from incident_cli.times import parse_duration

    env = get_env(ctx)
    try:
        max_age_seconds = parse_duration(max_age)
    except ValueError as exc:
        raise UsageError(f"--max-age: {exc}") from None
    config = env.config()
    path = env.resolved_db_path()
    from incident_cli.store.connection import is_url

    if path != ":memory:" and not is_url(path) and not Path(path).exists():
        # Creating an empty DB here would hide that nothing has ever run against this path.
        problem = f"state DB {path} does not exist: nothing has run yet"
        if as_json:
            emit_json({"ok": False, "problems": [problem], "db": {"path": path}})
        else:
            sys.stderr.write(f"incident: {printable(problem)}\n")
        raise typer.Exit(int(ExitStatus.PARTIAL_FAILURE))
    health = check_health(
        env.db(),
        env.now(),
        max_age=max_age_seconds,
        configured_sources=tuple(config.sources),
        expect=tuple(expect) if expect else None,
        db_path=path,
        host=config.host,
    )
    if as_json:
        emit_json(health_json(health))
    elif not env.quiet or health.problems:
        _print_health(health)
    if health.problems:
        raise typer.Exit(int(ExitStatus.PARTIAL_FAILURE))


def _print_hosts(out: Any, h: Any, ago: Any) -> None:
    """Each host's last tick, the one that ticked last marked."""
    from rich.table import Table

    from incident_cli.display import safe_markup

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("HOST", "LAST TICK", "COMMAND", "EXIT", ""):
        table.add_column(column)
    for x in h.hosts:
        exit_code = "" if x.last_exit is None else str(x.last_exit)
        notes = [
            n
            for n, on in (
                ("ticked last", x.host == h.last_tick_host),
                ("this host", x.host == h.this_host),
            )
            if on
        ]
        table.add_row(
            safe_markup(x.host),
            ago(x.last_run_at),
            safe_markup(x.command),
            f"[red]{exit_code}[/]" if x.last_exit else exit_code,
            ", ".join(notes),
        )
    out.print()
    out.print(table)


def _print_health(h: Any) -> None:
    from rich.table import Table

    from incident_cli.display import safe_markup
    from incident_cli.times import format_duration, to_rfc3339

    def ago(at: float | None) -> str:
        return "never" if at is None else f"{format_duration(max(h.checked_at - at, 0))} ago"

    out = console()
    verdict = "[bold green]OK[/]" if h.ok else "[bold red]PROBLEM[/]"
    out.print(f"incident status: {verdict}  ({to_rfc3339(h.checked_at)})")
    for problem in h.problems:
        out.print(f"  [red]✗[/] {safe_markup(problem)}")
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("COMMAND", "LAST RUN", "LAST OK", "EXIT", "TOOK", "CHECKED"):
        table.add_column(column)
    for c in h.commands:
        exit_code = "" if c.last_exit is None else str(c.last_exit)
        table.add_row(
            safe_markup(c.command),
            ago(c.last_run_at),
            ago(c.last_ok_at),
            f"[red]{exit_code}[/]" if c.last_exit else exit_code,
            "" if c.last_duration is None else f"{c.last_duration:.1f}s",
            ("[red]stale[/]" if c.problem else "fresh") if c.expected else "-",
        )
    if h.commands:
        out.print()
        out.print(table)
    if h.hosts:
        _print_hosts(out, h, ago)
    if h.sources:
        table = Table(box=None, pad_edge=False, header_style="bold")
        for column in ("SOURCE", "REACHABLE", "FAILURES", "LAST OK", "ALERTS", "LAST ERROR"):
            table.add_column(column, overflow="fold")
        for s in h.sources:
            reach = {True: "yes", False: "[red]no[/]", None: "not checked"}[s.reachable]
            table.add_row(
                safe_markup(s.name) + ("" if s.configured else " (not configured)"),
                reach,
                str(s.consecutive_failures),
                ago(s.last_ok_at),
                "" if s.alerts is None else str(s.alerts),
                safe_markup((s.last_error or "")[:200]),
            )
            for r in s.replicas:
                table.add_row(
                    f"  replica {safe_markup(r.url)}",
                    {True: "yes", False: "[red]no[/]", None: "not checked"}[r.reachable],
                    str(r.consecutive_failures),
                    ago(r.last_ok_at),
                    "",
                    safe_markup((r.last_error or "")[:200]),
                )
        out.print()
        out.print(table)
    sev = ", ".join(f"{n} {s}" for s, n in sorted(h.open_by_severity.items()))
    out.print()
    out.print(
        f"incidents: {h.incidents.get('open', 0)} open,"
        f" {h.incidents.get('acknowledged', 0)} acknowledged" + (f" ({sev})" if sev else "")
    )
    out.print(
        f"actions: {h.pending_actions} pending, {h.running_actions} running"
        + (f", {h.awaiting_approval} awaiting approval" if h.awaiting_approval else "")
    )
    if h.breaker["opened_at"] is not None:
        out.print(f"recovery breaker: [bold red]OPEN[/] since {ago(h.breaker['opened_at'])}")
    elif h.breaker["closed_by"]:
        out.print(
            f"recovery breaker: closed {ago(h.breaker['closed_at'])}"
            f" by {safe_markup(str(h.breaker['closed_by']))}"
        )
    oldest = (
        f", oldest {ago(h.oldest_pending_notification_at)}"
        if h.oldest_pending_notification_at is not None
        else ""
    )
    dead = f"[red]{h.notifications_dead} dead[/]" if h.notifications_dead else "0 dead"
    out.print(f"notifications: {h.notifications_pending} pending{oldest}, {dead}")
    kind = "PostgreSQL" if h.db_backend == "postgresql" else "SQLite"
    size = h.db_size_bytes / 1048576
    out.print(f"db: {safe_markup(str(h.db_path))} ({kind}, {size:.1f} MiB)")


@app.command()
def archive(
    ctx: typer.Context,
    older_than: float = typer.Option(
        ...,
        "--older-than",
        metavar="DAYS",
        help="Archive incidents resolved more than DAYS days ago.",
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Count what would go; change nothing."),
    vacuum: bool = typer.Option(False, "--vacuum", help="VACUUM afterwards to give space back."),
    as_json: bool = typer.Option(False, "--json", help="Plain JSON on stdout."),
) -> None:
    """Retention: remove old resolved incidents and their rows, keeping the report numbers.

    Each archived incident is first added to an hourly rollup, so `report` and the `metrics`
    counters give the same counts and means afterwards (medians and percentiles cover only
    the incidents still in the DB). Incidents with notifications or actions still queued wait.
    """
    from incident_cli.reporting.archive import archive as archive_incidents
    from incident_cli.times import format_duration, to_rfc3339

    env = get_env(ctx)
    if not math.isfinite(older_than) or older_than <= 0:
        raise UsageError("--older-than takes a positive number of days")
    reopen_within = env.config().incidents.reopen_within
    if older_than * 86400 <= reopen_within:
        # An archived incident can no longer reopen; its alert would open a new one instead.
        raise UsageError(
            f"--older-than must be longer than incidents.reopen_within"
            f" ({format_duration(reopen_within)})"
        )
    # A dry run only reads (WAL readers never wait): no lock, and no heartbeat that would
    # hide a stale archive job from `status --expect archive`.
    with tick(env, "archive", lock=not dry_run, heartbeat=not dry_run):
        result = archive_incidents(
            env.db(),
            env.now(),
            older_than,
            dry_run=dry_run,
            vacuum=vacuum and not dry_run,
            keep_journeys=2 * env.config().anomaly.window,
        )
    summary = {
        "dry_run": result.dry_run,
        "cutoff": to_rfc3339(result.cutoff),
        "incidents": result.incidents,
        "alerts": result.alerts,
        "timeline": result.timeline,
        "actions": result.actions,
        "notifications": result.notifications,
        "storm_notifications": result.storm_notifications,
        "journey_results": result.journeys,
        "waiting": result.waiting,
        "vacuumed": result.vacuumed,
        "size_before_bytes": result.size_before,
        "size_after_bytes": result.size_after,
    }
    if as_json:
        emit_json(summary)
        return
    if not (env.verbose or dry_run):
        return
    verb = "would archive" if dry_run else "archived"
    line = (
        f"archive: {verb} {result.incidents} incident(s) resolved before"
        f" {to_rfc3339(result.cutoff)} ({result.alerts} alerts, {result.timeline} timeline"
        f" events, {result.actions} actions, {result.notifications} notifications)"
        f", {result.storm_notifications} storm notification(s)"
        f" and {result.journeys} old journey result(s)"
    )
    if result.waiting:
        line += f"; {result.waiting} kept until their pending work is done"
    if dry_run and vacuum:
        line += "; would VACUUM"
    if result.vacuumed and result.size_before is not None and result.size_after is not None:
        line += (
            f"; VACUUM: {result.size_before / 1048576:.1f} MiB →"
            f" {result.size_after / 1048576:.1f} MiB"
        )
    sys.stdout.write(line + "\n")
