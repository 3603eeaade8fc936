"""Commands on incidents: poll, list, show, ack, resolve."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

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
from incident_cli.errors import NotFound, UsageError, worst_exit

if TYPE_CHECKING:
    from incident_cli.models import Incident

DRY_RUN = typer.Option(False, "--dry-run", help="Print what would be done; change nothing.")
JSON = typer.Option(False, "--json", help="Plain JSON on stdout.")


def _text_arg(value: str | None, option: str) -> str | None:
    """A text option as storable UTF-8: bytes that are not UTF-8 (surrogate-escaped by Python)
    become U+FFFD instead of failing the write."""
    if value is None:
        return None
    value = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    if option == "--by" and not value.strip():
        raise UsageError("--by needs a name")
    return value


def _default_actor() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


@app.command()
def poll(
    ctx: typer.Context,
    dry_run: bool = DRY_RUN,
    as_json: bool = JSON,
    max_runtime: str | None = max_runtime_option(),
) -> None:
    """Fetch alerts from every source once; open, update, reopen and auto-resolve incidents."""
    from incident_cli.intake.poll import poll_once
    from incident_cli.outcomes import poll_stage

    env = get_env(ctx)
    set_max_runtime(env, max_runtime)
    with tick(env, "poll", heartbeat=not dry_run) as record:
        result = poll_once(env.db(), env.config(), env.now(), dry_run=dry_run, runtime=env.runtime)
        stage = poll_stage(result)
        say(env, stage)
        record.add(stage)
    summary = {
        "opened": result.opened,
        "reopened": result.reopened,
        "resolved": result.resolved,
        "updated": result.updated,
        "alerts": result.alerts_seen,
        "storm": result.storm,
        "failed_sources": result.failed_sources,
        "dry_run": dry_run,
    }
    if as_json:
        emit_json(summary)
    elif env.verbose or dry_run:
        prefix = "would have: " if dry_run else ""
        sys.stdout.write(f"poll: {prefix}{stage.summary}\n")
    worst = worst_exit(record.codes)
    if worst:
        raise typer.Exit(worst)


STATUS_CHOICES = ("open", "acknowledged", "resolved", "all")


@app.command("list")
def list_(
    ctx: typer.Context,
    status: str = typer.Option(
        None,
        "--status",
        help="open, acknowledged, resolved or all (default: open and acknowledged).",
        show_default=False,
    ),
    since: float = typer.Option(None, "--since", help="Only incidents opened in the last HOURS."),
    limit: int = typer.Option(None, "--limit", min=1, help="At most this many."),
    as_json: bool = JSON,
) -> None:
    """Incidents, newest first."""
    from incident_cli.store.incidents import list_incidents

    env = get_env(ctx)
    if status is not None and status not in STATUS_CHOICES:
        raise UsageError(f"--status must be one of {', '.join(STATUS_CHOICES)}, not {status!r}")
    statuses: tuple[str, ...] | None
    if status is None:
        statuses = ("open", "acknowledged")
    elif status == "all":
        statuses = None
    else:
        statuses = (status,)
    if since is not None and not (0 <= since < float("inf")):
        raise UsageError("--since takes a positive number of hours")
    db = env.db()
    cutoff = None if since is None else env.now() - since * 3600
    incidents = list_incidents(db, statuses, cutoff, limit)
    if as_json:
        emit_json([i.to_json() for i in incidents])
        return
    if env.quiet:
        return
    from incident_cli.store.outbox import unsent_counts

    _print_list(env, incidents, unsent_counts(db, [i.id for i in incidents]))


def _age(env: Any, at: float | None) -> str:
    from incident_cli.times import format_duration

    if at is None:
        return "—"
    return format_duration(max(env.now() - at, 0)) + " ago"


_SEVERITY_STYLE = {"critical": "bold red", "error": "red", "warning": "yellow", "info": "cyan"}


def _print_list(env: Any, incidents: list[Incident], notes: dict[int, dict[str, int]]) -> None:
    from rich.table import Table

    out = console()
    if not incidents:
        out.print("no incidents")
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("ID", "STATUS", "SEVERITY", "TITLE", "OPENED", "NOTES"):
        table.add_column(column, overflow="fold")
    for incident in incidents:
        flags = []
        if incident.flapping:
            flags.append("flapping")
        if incident.reopen_count:
            flags.append(f"reopened x{incident.reopen_count}")
        pending = notes.get(incident.id, {})
        if pending.get("pending"):
            flags.append(f"{pending['pending']} notification(s) pending")
        if pending.get("dead"):
            flags.append(f"{pending['dead']} notification(s) DEAD")
        table.add_row(
            str(incident.id),
            incident.status,
            _styled(incident.severity, _SEVERITY_STYLE.get(incident.severity)),
            _escape(incident.title, limit=300),
            _age(env, incident.opened_at),
            ", ".join(flags),
        )
    out.print(table)


def _escape(text: str, limit: int | None = None) -> str:
    """Untrusted text for one line of rich markup: inert, and `[red]` stays literal."""
    from incident_cli.display import safe_markup

    return safe_markup(text, limit=limit)


def _styled(text: str, style: str | None) -> str:
    """Escaped text, wrapped in a style tag only when there is a style (`[]x[/]` is an error)."""
    return f"[{style}]{_escape(text)}[/]" if style else _escape(text)


@app.command()
def show(
    ctx: typer.Context,
    incident_id: int = typer.Argument(..., metavar="ID", help="Incident id."),
    as_json: bool = JSON,
) -> None:
    """One incident with its alerts, timeline, actions and notifications."""
    from incident_cli.store.incidents import action_commands, get_incident, incident_detail

    env = get_env(ctx)
    db = env.db()
    incident = get_incident(db, incident_id)
    if incident is None:
        raise NotFound(f"no incident {incident_id}")
    detail = incident_detail(db, incident, env.config().defaults.severity)
    if as_json:
        emit_json(detail)
        return
    _print_detail(env, detail, action_commands(db, incident.id))


KEY_WIDTH = 13  # the key column of `show`'s facts; values (and their later lines) start after it
MAX_SHOWN_VALUE = 4000  # characters of one fact or annotation; `show --json` has them all


def _fact(out: Any, name: str, value: str, *, multiline: bool = False) -> None:
    """`  name         value`, a multi-line value's later lines indented under the first."""
    from incident_cli.display import safe_markup

    shown = safe_markup(value, multiline=multiline, limit=MAX_SHOWN_VALUE)
    indent = "\n" + " " * (2 + KEY_WIDTH)
    out.print(f"  {_escape(name, limit=40):<{KEY_WIDTH}}" + indent.join(shown.split("\n")))


def _print_detail(env: Any, d: dict[str, Any], commands: dict[int, list[list[str]]]) -> None:
    import shlex

    from rich.table import Table

    out = console()
    sev = d["severity"]
    out.print(
        f"[bold]#{d['id']} {_escape(d['title'])}[/]  "
        f"{_styled(sev, _SEVERITY_STYLE.get(sev))}  {_escape(d['status'])}"
        + (f" ({_escape(d['resolution'])})" if d["resolution"] else "")
        + ("  [magenta]flapping[/]" if d["flapping"] else "")
    )
    facts = [
        ("rule", f"{d['rule']} → {d['handler']}"),
        ("source", d["source"]),
        ("key", d["key"]),
        ("started", d["started_at"]),
        ("opened", d["opened_at"]),
        (
            "acknowledged",
            f"{d['acknowledged_at']} by {d['acknowledged_by']}" if d["acknowledged_at"] else None,
        ),
        ("resolved", d["resolved_at"]),
        ("reopened", str(d["reopen_count"]) if d["reopen_count"] else None),
    ]
    for name, value in facts:
        if value:
            _fact(out, name, str(value))
    if d["labels"]:
        _fact(out, "labels", ", ".join(f"{k}={v[:200]}" for k, v in d["labels"].items()))
    for name, value in d["annotations"].items():
        _fact(out, name, value, multiline=True)
    if d["alerts"]:
        # Every alert with its own severity and state, and the labels it does not share with
        # the incident (those are printed above).
        out.print(f"\n[bold]Alerts[/] ({len(d['alerts'])})")
        for a in d["alerts"]:
            own = ", ".join(
                f"{k}={v[:200]}"
                for k, v in a["labels"].items()
                if k not in ("alertname", "severity") and d["labels"].get(k) != v
            )
            severity = _styled(a["severity"].ljust(9), _SEVERITY_STYLE.get(a["severity"]))
            out.print(
                f"  {_escape(a['state']):<11}{severity}"
                f"{_escape(a['source']):<14}{_escape(a['alertname'] or '', limit=80)}"
                f"  since {a['starts_at'] or a['first_seen_at']}"
                + (f"\n    {_escape(own)}" if own else "")
            )
    out.print("\n[bold]Timeline[/]")
    for e in d["timeline"]:
        out.print(
            f"  {e['at']}  {_escape(e['kind']):<20}{_escape(e['actor']):<12}{_escape(e['message'])}"
        )
    if d["actions"]:
        out.print("\n[bold]Actions[/]")
        table = Table(box=None, pad_edge=False, header_style="bold")
        for column in ("ID", "KIND", "STATUS", "TRIES", "COMMAND", "EXIT", "ERROR"):
            table.add_column(column, overflow="fold")
        for a in d["actions"]:
            argvs = commands.get(a["id"]) or ([a["command"]] if a["command"] else [])
            table.add_row(
                str(a["id"]),
                _escape(a["kind"]),
                _escape(a["status"]),
                str(a["attempts"]),
                # One command a line, shell-quoted: ready to copy and paste.
                "\n".join(_escape(shlex.join(argv)) for argv in argvs),
                "" if a["exit_code"] is None else str(a["exit_code"]),
                _escape(a["error"] or ""),
            )
        out.print(table)
    if d["notifications"]:
        out.print("\n[bold]Notifications[/]")
        for n in d["notifications"]:
            style = {"dead": "bold red", "pending": "yellow"}.get(n["status"])
            status = _styled(n["status"].ljust(8), style)
            out.print(
                f"  {_escape(n['channel']):<12}{_escape(n['event']):<14}{status}"
                f"tries {n['attempts']}  {_escape(n['error'] or '')}"
            )


@app.command()
def ack(
    ctx: typer.Context,
    incident_id: int = typer.Argument(..., metavar="ID", help="Incident id."),
    by: str = typer.Option(None, "--by", help="Who acknowledges (default: the OS user)."),
    note: str | None = typer.Option(None, "--note", help="A note for the timeline."),
    dry_run: bool = DRY_RUN,
) -> None:
    """Acknowledge an incident: stops escalation and tells the channels that got it."""
    from incident_cli.lifecycle.manual import acknowledge

    env = get_env(ctx)
    who = (_text_arg(by, "--by") or _default_actor())[:200]
    note = _text_arg(note, "--note")
    if dry_run:
        _describe_would(env, incident_id, f"acknowledge as {who}")
        return
    incident = acknowledge(env.db(), env.config(), incident_id, who, note, env.now())
    if not env.quiet:
        sys.stdout.write(f"incident {incident.id} acknowledged by {printable(who)}\n")


@app.command()
def resolve(
    ctx: typer.Context,
    incident_id: int = typer.Argument(..., metavar="ID", help="Incident id."),
    note: str | None = typer.Option(None, "--note", help="A note for the timeline."),
    false_positive: bool = typer.Option(
        False, "--false-positive", help="Resolve as a false positive (counted in reports)."
    ),
    by: str = typer.Option(None, "--by", help="Who resolves (default: the OS user)."),
    dry_run: bool = DRY_RUN,
) -> None:
    """Resolve an incident by hand."""
    from incident_cli.lifecycle.manual import resolve_by_hand

    env = get_env(ctx)
    who = (_text_arg(by, "--by") or _default_actor())[:200]
    note = _text_arg(note, "--note")
    if dry_run:
        what = "resolve as a false positive" if false_positive else "resolve"
        _describe_would(env, incident_id, f"{what} as {who}")
        return
    incident = resolve_by_hand(
        env.db(), env.config(), incident_id, who, note, false_positive, env.now()
    )
    if not env.quiet:
        what = f"resolved ({incident.resolution}) by {who}"
        sys.stdout.write(f"incident {incident.id} {printable(what)}\n")


def _describe_would(env: Any, incident_id: int, what: str) -> None:
    from incident_cli.store.incidents import get_incident

    incident = get_incident(env.db(), incident_id)
    if incident is None:
        raise NotFound(f"no incident {incident_id}")
    title = printable(incident.title)
    sys.stdout.write(f"would {what}: incident {incident.id} ({incident.status}) {title}\n")
