"""Operations commands: `run` (one whole tick) and `cron print`."""

from __future__ import annotations

import sys

import typer

from incident_cli.cli import app, emit_json, get_env, tick


@app.command()
def run(
    ctx: typer.Context,
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Pass --dry-run to every stage: change nothing, send nothing."
    ),
    as_json: bool = typer.Option(False, "--json", help="Each stage's result as plain JSON."),
) -> None:
    """One whole tick: poll, detect-anomalies, recover, notify (what cron runs every minute).

    A stage that fails does not stop the later ones; the exit code is the worst of them.
    """
    from incident_cli.redact import redact
    from incident_cli.run import StageResult, run_tick
    from incident_cli.store import record_heartbeat

    env = get_env(ctx)
    db = env.db()

    def stage_done(stage: StageResult) -> None:
        # Each stage leaves its own heartbeat too: `status` and the metrics watch them.
        error = redact("; ".join(stage.errors), env.secrets()) if stage.errors else None
        if not dry_run:
            record_heartbeat(db, stage.name, stage.started_at, stage.finished_at, stage.code, error)
        for line in stage.errors:
            sys.stderr.write(
                f"incident: {stage.name}: {' '.join(redact(line, env.secrets()).split())}\n"
            )
        if (env.verbose or dry_run) and not as_json and not env.quiet:
            prefix = "would have: " if dry_run else ""
            sys.stdout.write(f"{stage.name}: {prefix}{stage.summary}\n")

    with tick(env, "run", heartbeat=not dry_run) as codes:
        results = run_tick(db, env.config(), env.clock, dry_run=dry_run, on_stage_done=stage_done)
        codes.extend(stage.code for stage in results)
    if as_json:
        emit_json({"dry_run": dry_run, "stages": [stage.to_json() for stage in results]})
    worst = max(codes, default=0)
    if worst:
        raise typer.Exit(worst)


cron_app = typer.Typer(help="Deployment files for cron and systemd.", no_args_is_help=True)
app.add_typer(cron_app, name="cron")


@cron_app.command("print")
def cron_print(
    ctx: typer.Context,
    systemd: bool = typer.Option(
        False, "--systemd", help="Also print incident.service and incident.timer."
    ),
) -> None:
    """The crontab lines (and systemd units) for this install, with absolute paths."""
    from incident_cli.config import BUILTIN
    from incident_cli.deploy import crontab, service_unit, this_install, timer_unit

    env = get_env(ctx)
    config = env.config()
    # Always the absolute DB path: cron's working directory is $HOME, not this one.
    install = this_install(None if config.path == BUILTIN else config.path, env.resolved_db_path())
    out = [crontab(install)]
    if systemd:
        out += [
            "# ---- /etc/systemd/system/incident.service\n" + service_unit(install),
            "# ---- /etc/systemd/system/incident.timer\n" + timer_unit(),
        ]
    sys.stdout.write("\n".join(out))
