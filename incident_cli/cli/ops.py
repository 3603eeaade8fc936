"""Operations commands: `run` (one whole tick), `test` (the smoke test) and `cron print`."""

from __future__ import annotations

import sys

import typer

from incident_cli.cli.app import app
from incident_cli.cli.context import duration_option, emit_json, get_env, max_runtime_option
from incident_cli.config.defaults import CONFIG_VAR, DB_VAR


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
    from incident_cli.cli.ticks import run_command

    code = run_command(
        get_env(ctx),
        dry_run=dry_run,
        as_json=as_json,
        max_runtime=max_runtime,
        every=every,
        span=span,
    )
    if code:
        raise typer.Exit(code)


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
