"""Commands on synthetic journeys: detect-anomalies, and `journey record` for probe scripts."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from incident_cli.cli.app import app
from incident_cli.cli.context import console, emit_json, get_env, say, tick
from incident_cli.errors import UsageError, worst_exit

if TYPE_CHECKING:
    from incident_cli.intake.anomaly import JourneyOutcome
    from incident_cli.intake.anomaly_result import DetectResult


@app.command("detect-anomalies")
def detect_anomalies(
    ctx: typer.Context,
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print what would be done; change nothing."
    ),
    as_json: bool = typer.Option(False, "--json", help="Plain JSON on stdout."),
) -> None:
    """Read synthetic-journey results; open and resolve anomaly incidents (failure rate, p95
    latency jump, consecutive failures)."""
    from incident_cli.intake.anomaly import detect_anomalies as detect
    from incident_cli.outcomes import detect_stage

    env = get_env(ctx)
    with tick(env, "detect-anomalies", heartbeat=not dry_run) as record:
        result = detect(env.db(), env.config(), env.now(), dry_run=dry_run)
        stage = detect_stage(result)
        record.add(stage)
    say(env, stage, notes=not as_json)  # the JSON counts the skipped lines
    if as_json:
        emit_json(result.to_json())
    elif (env.verbose or dry_run) and not env.quiet:
        _print_summary(result)
    worst = worst_exit(record.codes)
    if worst:
        raise typer.Exit(worst)


_SAY = {
    "opened": "opened incident {id}",
    "reopened": "reopened incident {id}",
    "changed": "tripped checks changed on incident {id}",
    "firing": "still firing on incident {id}",
    "recovering": "checks pass; waiting for a whole new window on incident {id}",
    "resolved": "resolved incident {id}",
    "kept_open": "checks pass; auto-resolve is off: resolve incident {id} by hand",
    "held": "resolved by hand; waiting for newer results on incident {id}",
}


def _journey_line(o: JourneyOutcome) -> str:
    from incident_cli.display import safe_markup

    e = o.evaluation
    parts = [f"{e.results} results"]
    if e.failure_rate is not None:
        parts.append(f"failure rate {e.failure_rate:.1%}")
    if e.p95_ms is not None:
        baseline = "" if e.baseline_p95_ms is None else f" (before {e.baseline_p95_ms:g} ms)"
        parts.append(f"p95 {e.p95_ms:g} ms{baseline}")
    if e.failure_run:
        parts.append(f"{e.failure_run} failure(s) in a row")
    if not e.window_full:
        parts.append("window not full")
    line = f"  {safe_markup(e.journey)}: " + ", ".join(parts)
    if e.tripped:
        line += " — [bold]tripped[/] " + ", ".join(c.name for c in e.tripped)
    if o.incident_id is not None and o.action in _SAY:
        line += " → " + _SAY[o.action].format(id=o.incident_id)
    return line


def _print_summary(result: DetectResult) -> None:
    out = console()
    prefix = "would have: " if result.dry_run else ""
    f = result.file
    if f is not None:
        reset = " (rotated or truncated: re-read from the start)" if f.reset else ""
        reset += " (more to read next tick)" if f.more else ""
        out.print(
            f"journeys file: {f.lines} new line(s), {f.stored} new result(s),"
            f" {f.skipped} skipped{reset}",
            markup=False,
        )
    out.print(
        f"detect-anomalies: {prefix}opened {len(result.opened)}, reopened {len(result.reopened)},"
        f" changed {len(result.changed)}, resolved {len(result.resolved)}"
        f" ({len(result.journeys)} journeys)",
        markup=False,
    )
    for outcome in result.journeys:
        out.print(_journey_line(outcome))


journey_app = typer.Typer(
    name="journey",
    help="Synthetic-journey results (what probe scripts call).",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)
app.add_typer(journey_app, name="journey")


@journey_app.command("record")
def record(
    ctx: typer.Context,
    name: str = typer.Argument(..., metavar="NAME", help="The journey, e.g. login."),
    ok: bool = typer.Option(False, "--ok", help="The run succeeded."),
    fail: bool = typer.Option(False, "--fail", help="The run failed."),
    latency_ms: float = typer.Option(
        ..., "--latency-ms", help="How long the run took, in milliseconds (>= 0)."
    ),
    at: str = typer.Option(
        None,
        "--at",
        help="When it ran: RFC 3339 with a time and Z or an offset (e.g. 2026-11-28T20:00:00Z);"
        " default now.",
        show_default=False,
    ),
) -> None:
    """Store one synthetic-journey result; detect-anomalies analyses it with the file's."""
    from incident_cli.intake import journeys

    env = get_env(ctx)
    if ok == fail:
        raise UsageError("give exactly one of --ok and --fail")
    now = env.now()
    try:
        journey = journeys.check_name(name)
    except ValueError as exc:
        raise UsageError(f"NAME: {exc}") from None
    try:
        when = round(now, 6) if at is None else journeys.check_at(at, now)
    except ValueError as exc:
        raise UsageError(f"--at: {exc}") from None
    try:
        latency = journeys.check_latency(latency_ms)
    except ValueError as exc:
        raise UsageError(f"--latency-ms: {exc}") from None
    result = journeys.JourneyResult(journey=journey, at=when, ok=ok, latency_ms=latency)
    journeys.record_result(env.db(), result)
