"""The `incident notify` command: deliver the outbox, or show it with --dry-run."""

from __future__ import annotations

import sys
from typing import Any

import typer

from incident_cli.cli.app import app
from incident_cli.cli.context import (
    emit_json,
    get_env,
    max_runtime_option,
    say,
    set_max_runtime,
    tick,
)
from incident_cli.display import printable
from incident_cli.errors import UsageError, worst_exit


@app.command()
def notify(
    ctx: typer.Context,
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print each pending payload (secrets masked); send nothing."
    ),
    channel: str = typer.Option(
        None, "--channel", metavar="NAME", help="Only this channel.", show_default=False
    ),
    as_json: bool = typer.Option(False, "--json", help="Plain JSON on stdout."),
    max_runtime: str | None = max_runtime_option(),
) -> None:
    """Deliver queued notifications with retry, backoff and per-channel rate limits."""
    env = get_env(ctx)
    set_max_runtime(env, max_runtime)
    config = env.config()
    if channel is not None and channel not in config.channels:
        known = ", ".join(config.channels) or "none configured"
        raise UsageError(f"no channel named {channel!r} (channels: {known})")
    if dry_run:
        from incident_cli.notify.preview import preview_pending

        previews = preview_pending(env.db(), config, env.now(), channel)
        if as_json:
            emit_json({"dry_run": True, "notifications": [p.to_json() for p in previews]})
        else:
            _print_previews([p.to_json() for p in previews])
        return

    from incident_cli.notify.delivery import deliver_due
    from incident_cli.outcomes import notify_stage

    with tick(env, "notify") as record:
        report = deliver_due(
            env.db(), config, clock=env.clock, only_channel=channel, runtime=env.runtime
        )
        stage = notify_stage(report)
        record.add(stage)
    say(env, stage)
    if as_json:
        emit_json({"dry_run": False, **report.to_json()})
    elif env.verbose:
        for outcome in report.outcomes:
            if outcome.status in ("retry", "held"):
                line = (
                    f"notification {outcome.id} to {outcome.channel} ({outcome.event}):"
                    f" {outcome.status}: {outcome.error}"
                )
                sys.stdout.write(printable(line) + "\n")
        sys.stdout.write(
            f"notify: sent {report.count('sent')}, retrying {report.count('retry')},"
            f" dead {report.count('dead')}, held {report.count('held')},"
            f" left for the next tick {report.deferred}\n"
        )
    worst = worst_exit(record.codes)
    if worst:
        raise typer.Exit(worst)


def _print_previews(previews: list[dict[str, Any]]) -> None:
    from incident_cli.display import json_text

    if not previews:
        sys.stdout.write("nothing to send\n")
        return
    for p in previews:
        about = f", incident {p['incident_id']}" if p["incident_id"] is not None else ""
        head = f"would send notification {p['id']} to {p['channel']} ({p['event']}{about})"
        if p["method"] is None:
            sys.stdout.write(printable(f"{head}: not sent: {p['note']}") + "\n")
            continue
        note = f" [{p['note']}]" if p["note"] else ""
        sys.stdout.write(printable(f"{head}: {p['method']} {p['url']}{note}") + "\n")
        for name, value in p["headers"].items():
            sys.stdout.write(printable(f"  {name}: {value}") + "\n")
        if (
            isinstance(p["body"], dict)
            and isinstance(p["body"].get("text"), str)
            and (p["method"] == "SMTP")
        ):
            sys.stdout.write(printable(f"  Subject: {p['body']['subject']}") + "\n\n")
            text = printable(p["body"]["text"], multiline=True)
            sys.stdout.write("".join(f"  {line}\n" for line in text.split("\n")))
        else:
            text = json_text(p["body"])
            sys.stdout.write("".join(f"  {line}\n" for line in text.splitlines()))
