"""`incident logs`: the timeline across all incidents, and following it as ticks write it."""

from __future__ import annotations

import sys

import typer

from incident_cli.cli.app import app
from incident_cli.cli.context import get_env
from incident_cli.errors import UsageError


def parse_since(text: str) -> float:
    """`--since`: a duration (`90s`, `1h`, `2d`) or a number of hours; seconds back from now."""
    from incident_cli.times import parse_duration

    try:
        hours = float(text)
    except ValueError:
        try:
            return parse_duration(text)
        except ValueError as exc:
            raise UsageError(f"--since: {exc}") from None
    if not 0 <= hours < float("inf"):
        raise UsageError("--since takes a duration such as 1h, or a positive number of hours")
    return hours * 3600


@app.command()
def logs(
    ctx: typer.Context,
    follow: bool = typer.Option(
        False, "--follow", "-f", help="Keep printing new events as ticks write them (Ctrl-C ends)."
    ),
    since: str = typer.Option(
        None,
        "--since",
        help="Only events of the last DURATION (1h, 30m, 2d; a bare number is hours).",
        show_default=False,
    ),
    incident: int = typer.Option(
        None, "--incident", metavar="ID", help="Only this incident's events.", show_default=False
    ),
    kind: list[str] = typer.Option(
        None,
        "--kind",
        help="Only events of this kind (opened, acknowledged, note, ...); repeat for several.",
        show_default=False,
    ),
    as_json: bool = typer.Option(
        False, "--json", help="One JSON object per line: the timeline fields and incident_id."
    ),
) -> None:
    """The timeline across all incidents, oldest first: time, incident, kind, who, what.

    With -f it then polls the state file about once a second for new events until Ctrl-C.
    """
    from incident_cli.display import json_text
    from incident_cli.reporting.eventlog import Event, follow_events, newest_event_id, read_events

    env = get_env(ctx)
    cutoff = None if since is None else env.now() - parse_since(since)
    kinds = tuple(kind or ())
    db = env.db()

    def show(event: Event) -> None:
        # Either way nothing raw reaches the terminal: json_text escapes every control character.
        line = json_text(event.to_json(), indent=None) if as_json else event.line()
        sys.stdout.write(line + "\n")

    try:
        # The newest id before reading: a follower starts right after what was printed.
        last = newest_event_id(db) if follow else 0
        for event in read_events(db, since=cutoff, incident_id=incident, kinds=kinds):
            if follow and event.id > last:
                continue  # written meanwhile: the follower prints it, in order
            show(event)
        sys.stdout.flush()
        if follow:
            for event in follow_events(db, after_id=last, incident_id=incident, kinds=kinds):
                show(event)
                sys.stdout.flush()
    except KeyboardInterrupt:  # how -f ends: not an error
        raise typer.Exit(0) from None
