"""Operations commands: `cron print`."""

from __future__ import annotations

import sys

import typer

from incident_cli.cli import app, get_env

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
    install = this_install(None if config.path == BUILTIN else config.path, env.db_path)
    out = [crontab(install)]
    if systemd:
        out += [
            "# ---- /etc/systemd/system/incident.service\n" + service_unit(install),
            "# ---- /etc/systemd/system/incident.timer\n" + timer_unit(),
        ]
    sys.stdout.write("\n".join(out))
