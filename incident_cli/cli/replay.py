"""`incident replay`: backtest the rule file against the alert history Prometheus kept."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from incident_cli.cli.app import app
from incident_cli.cli.context import emit_json, get_env
from incident_cli.errors import UsageError

FORMATS = ("table", "json", "markdown")


def parse_time(option: str, text: str, now: float) -> float:
    """A point in time: RFC 3339 (`2026-11-28T20:00:00Z`), or a duration back from now."""
    from incident_cli.times import parse_duration, parse_rfc3339

    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        return parse_rfc3339(text)
    except ValueError:
        raise UsageError(
            f"{option}: expected a duration back from now (7d, 12h) or an RFC 3339 time"
            f" (2026-11-28T20:00:00Z), got {text!r}"
        ) from None


@app.command()
def replay(
    ctx: typer.Context,
    since: str = typer.Option(
        ...,
        "--since",
        metavar="TIME",
        help="Start of the window: a duration back from now (7d, 12h) or an RFC 3339 time.",
    ),
    until: str = typer.Option(
        None,
        "--until",
        metavar="TIME",
        help="End of the window, like --since (default: now).",
        show_default=False,
    ),
    step: str = typer.Option(
        "60s", "--step", metavar="DURATION", help="The tick interval replayed (60s, 1s, 5m)."
    ),
    compare: Path = typer.Option(
        None,
        "--compare",
        metavar="OTHER.yaml",
        help="Replay this rule file too, over the same history, side by side.",
        show_default=False,
    ),
    fmt: str = typer.Option("table", "--format", "-f", help="table, json or markdown."),
) -> None:
    """Backtest the rule file against what really fired: each Prometheus source's
    ALERTS{alertstate="firing"} over the window (an Alertmanager source's through its
    history_url), fed tick by tick through the same lifecycle, rules, handler planning, storm
    and flapping logic and recovery decisions, on a scratch state in memory. No command runs,
    nothing is sent, the state DB is not touched.

    Shows incidents per rule, notifications per channel and event, recovery actions and what
    would have stopped them, escalations, and the alerts no rule matched.
    """
    from incident_cli.config.load import load_config
    from incident_cli.replay.render import render, to_json
    from incident_cli.replay.run import make_window, run_replay
    from incident_cli.times import parse_duration

    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    env = get_env(ctx)
    now = env.now()
    try:
        step_seconds = parse_duration(step)
    except ValueError as exc:
        raise UsageError(f"--step: {exc}") from None
    window = make_window(
        parse_time("--since", since, now),
        now if until is None else parse_time("--until", until, now),
        step_seconds,
    )
    configs = [env.config()]
    if compare is not None:
        configs.append(load_config(compare, env.environ, must_exist=True))

    def say(note: str) -> None:
        if not env.quiet:
            sys.stderr.write(f"incident: {note}\n")

    run = run_replay(configs, window, say)
    if fmt == "json":
        emit_json(to_json(run.results))
        return
    paths = [c.path for c in configs]
    sys.stdout.write(render(run.results, paths, fmt))
    if env.verbose:
        sys.stderr.write(
            f"incident: {run.queries} query_range request(s), {run.series} series read\n"
        )
