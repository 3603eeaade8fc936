"""Operations commands: `run` (one whole tick), `test` (the smoke test) and `cron print`."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import typer

from incident_cli.cli.app import app
from incident_cli.cli.context import (
    Env,
    duration_option,
    emit_json,
    get_env,
    held_lock,
    max_runtime_option,
    say,
    set_max_runtime,
    tick,
)
from incident_cli.config.defaults import CONFIG_VAR, DB_VAR
from incident_cli.errors import worst_exit

if TYPE_CHECKING:
    from incident_cli.runtime import Schedule


@app.command()
def run(
    ctx: typer.Context,
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Pass --dry-run to every stage: change nothing, send nothing."
    ),
    as_json: bool = typer.Option(False, "--json", help="Each stage's result as plain JSON."),
    max_runtime: str | None = max_runtime_option(),
    every: str | None = typer.Option(
        None,
        "--every",
        metavar="D",
        help="Run a tick every D (e.g. 5s) under one lock, for the time --for gives; each"
        " tick's --max-runtime is at most D.",
        show_default=False,
    ),
    span: str | None = typer.Option(
        None,
        "--for",
        metavar="D",
        help="With --every: start ticks from 0 through D (e.g. 55s), then exit. SIGTERM or"
        " SIGINT ends it between ticks.",
        show_default=False,
    ),
) -> None:
    """One whole tick: poll, detect-anomalies, sync, recover, notify (what cron runs every minute).

    A stage that fails does not stop the later ones; the exit code is the worst of them. With
    --every and --for, several ticks run under one lock, each with its own heartbeat; the exit
    code is the worst failure of any tick, and 75 only if the last tick ended 75.
    """
    from incident_cli.redact import redact
    from incident_cli.stages import StageResult, run_tick
    from incident_cli.store.status import record_heartbeat

    env = get_env(ctx)
    set_max_runtime(env, max_runtime)
    schedule = _schedule(env, every, span)
    db = env.db()

    def stage_done(stage: StageResult) -> None:
        # Each stage leaves its own heartbeat too: `status` and the metrics watch them.
        if not dry_run:
            error = stage.error_text()
            error = redact(error, env.secrets()) if error else None
            record_heartbeat(
                db,
                stage.name,
                stage.started_at,
                stage.finished_at,
                stage.code,
                error,
                env.config().host,
            )
            env.tick_stages.append(
                {"stage": stage.name, "exit_code": stage.code, "summary": stage.summary}
            )
        say(env, stage, prefix=f"{stage.name}: ")
        if (env.verbose or dry_run) and not as_json and not env.quiet:
            prefix = "would have: " if dry_run else ""
            sys.stdout.write(f"{stage.name}: {prefix}{stage.summary}\n")

    def one_tick(lock: bool) -> tuple[int, list[StageResult]]:
        with tick(env, "run", heartbeat=not dry_run, lock=lock) as record:
            results = run_tick(
                db,
                env.config(),
                env.clock,
                dry_run=dry_run,
                on_stage_done=stage_done,
                runtime=env.runtime,
            )
            record.codes.extend(stage.code for stage in results)
        return worst_exit(record.codes), results

    if schedule is None:
        worst, results = one_tick(lock=True)
        if as_json:
            emit_json({"dry_run": dry_run, "stages": [stage.to_json() for stage in results]})
    else:
        worst = _run_ticks(env, schedule, one_tick, dry_run=dry_run, as_json=as_json)
    if worst:
        raise typer.Exit(worst)


def _schedule(env: Env, every: str | None, span: str | None) -> Schedule | None:
    """--every/--for checked: both or neither, --every > 0, --for ≥ --every, and each tick's
    --max-runtime at most --every (the default is cut to it; a longer one is a usage error)."""
    from incident_cli.errors import UsageError
    from incident_cli.runtime import DEFAULT_MAX_RUNTIME, Schedule

    if every is None and span is None:
        return None
    if every is None or span is None:
        raise UsageError("--every and --for go together, e.g. --every 5s --for 55s")
    interval, length = duration_option("--every", every), duration_option("--for", span)
    if length < interval:
        raise UsageError(f"--for {span} is shorter than --every {every}")
    if env.max_runtime is None:
        env.max_runtime = min(DEFAULT_MAX_RUNTIME, interval)
    elif env.max_runtime > interval:
        raise UsageError(
            f"--max-runtime {env.max_runtime:g}s is longer than --every {every}: a tick must"
            " end before the next one is due"
        )
    return Schedule(interval, length)


def _run_ticks(
    env: Env,
    schedule: Schedule,
    one_tick: Callable[[bool], tuple[int, list[Any]]],
    *,
    dry_run: bool,
    as_json: bool,
) -> int:
    """The ticks of `run --every`, under one lock held from the first to the last."""
    from incident_cli.runtime import repeat_exit

    codes: list[int] = []
    ticks: list[dict[str, Any]] = []
    with held_lock(env), schedule:
        for _ in schedule.ticks():
            code, results = one_tick(False)
            codes.append(code)
            ticks.append({"exit_code": code, "stages": [stage.to_json() for stage in results]})
    if schedule.stopped_by is not None and env.verbose:
        sys.stderr.write(
            f"incident: run: stopped by {schedule.stopped_by} after {len(codes)} tick(s)\n"
        )
    if as_json:
        emit_json({"dry_run": dry_run, "ticks": ticks})
    return repeat_exit(codes)


@app.command("test")
def self_test(
    ctx: typer.Context,
    offline: bool = typer.Option(False, "--offline", help="Skip the checks that need sources."),
    as_json: bool = typer.Option(False, "--json", help="The checks as plain JSON."),
) -> None:
    """Smoke test for CI and after deploys: config, handlers, programs on PATH, channels, state,
    sources, and a synthetic alert through the whole pipeline in a scratch DB (channels in
    dry-run; the real DB is not touched). Exit 1 when a check fails."""
    from incident_cli.display import printable
    from incident_cli.errors import ConfigError
    from incident_cli.redact import mask_userinfo
    from incident_cli.selftest import FAILED, OK, Check, run_checks

    env = get_env(ctx)
    marks = {OK: "✓", FAILED: "✗", "skipped": "-"}
    checks: list[Check] = []

    def show(check: Check) -> None:
        check = Check(check.area, check.status, mask_userinfo(check.detail))  # URLs, overrides
        checks.append(check)
        if not as_json and not (env.quiet and check.status != FAILED):
            line = printable(f"{check.area}: {check.detail}")
            sys.stdout.write(f"{marks[check.status]} {line}\n")
            sys.stdout.flush()

    try:
        config = env.config()
    except ConfigError as exc:
        show(Check("config", FAILED, exc.message))
        if as_json:
            emit_json({"ok": False, "checks": [c.to_json() for c in checks]})
        raise typer.Exit(int(exc.exit_status)) from None
    show(
        Check(
            "config",
            OK,
            f"{config.path}: {len(config.sources)} source(s), {len(config.rules)} rule(s),"
            f" {len(config.channels)} channel(s)",
        )
    )
    for check in run_checks(config, env.resolved_db_path(), env.clock, offline=offline):
        show(check)
    failed = [c for c in checks if c.status == FAILED]
    if as_json:
        emit_json({"ok": not failed, "checks": [c.to_json() for c in checks]})
    elif not env.quiet:
        sys.stdout.write(f"{len(failed)} check(s) failed\n" if failed else "all checks passed\n")
    if failed:
        raise typer.Exit(1)


config_app = typer.Typer(help="The configuration in effect.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("show")
def config_show(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Plain JSON on stdout."),
) -> None:
    """The effective configuration: every key with the value in effect (defaults filled in),
    secrets masked, and `# from VAR` on each value that came from the environment — a
    `${VAR}` in the file, or a behaviour variable such as AUTO_RECOVERY_ENABLED that wins
    over the file."""
    from incident_cli.config.effective import render_json, render_text

    env = get_env(ctx)
    config = env.config()
    root = ctx.find_root()

    def from_env(param: str, variable: str) -> str | None:
        # By name: Typer bundles its own Click, whose enum is not click.core's.
        source = getattr(root.get_parameter_source(param), "name", None)
        return variable if source == "ENVIRONMENT" else None

    config_from = from_env("config", CONFIG_VAR)
    db_from = from_env("db", DB_VAR) or ("--db" if env.db_path else None)
    db_path = env.resolved_db_path()
    if as_json:
        emit_json(render_json(config, db_path, config_from=config_from, db_from=db_from))
    else:
        sys.stdout.write(render_text(config, db_path, config_from=config_from, db_from=db_from))


cron_app = typer.Typer(help="Deployment files for cron and systemd.", no_args_is_help=True)
app.add_typer(cron_app, name="cron")


@cron_app.command("print")
def cron_print(
    ctx: typer.Context,
    systemd: bool = typer.Option(
        False, "--systemd", help="Also print incident.service and incident.timer."
    ),
    every: str | None = typer.Option(
        None,
        "--every",
        metavar="D",
        help="A tick every D (at most 30s) instead of every minute: the crontab line runs"
        " `--wait D run --every D --for 60s-D`; the timer has OnUnitActiveSec=D.",
        show_default=False,
    ),
) -> None:
    """The crontab lines (and systemd units) for this install, with absolute paths."""
    from incident_cli.config.defaults import BUILTIN
    from incident_cli.deploy import crontab, service_unit, this_install, timer_unit
    from incident_cli.errors import UsageError

    interval = None if every is None else duration_option("--every", every)
    if interval is not None and interval > 30:
        raise UsageError(f"--every {every}: at most 30s (more than that, use the minute's line)")
    env = get_env(ctx)
    config = env.config()
    # Always the absolute DB path: cron's working directory is $HOME, not this one.
    install = this_install(None if config.path == BUILTIN else config.path, env.resolved_db_path())
    out = [crontab(install, interval)]
    if systemd:
        out += [
            "# ---- /etc/systemd/system/incident.service\n" + service_unit(install, interval),
            "# ---- /etc/systemd/system/incident.timer\n" + timer_unit(interval),
        ]
    sys.stdout.write("\n".join(out))
