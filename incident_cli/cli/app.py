"""The `incident` Typer app: the command group, global options, and the one place errors
become exit codes."""

from __future__ import annotations

import contextlib
import sys
from typing import Any

import typer
import typer.core

from incident_cli import __version__
from incident_cli.cli.context import (
    MAX_RUNTIME_HELP,
    Env,
    failure_code,
    set_max_runtime,
)
from incident_cli.config.defaults import CONFIG_VAR, DB_VAR

# `incident --help` lists the stages in the order a tick runs them, then the rest by use.
# A command missing here follows them, in the order it was registered.
COMMAND_ORDER = (
    "poll",
    "detect-anomalies",
    "sync",
    "recover",
    "notify",
    "run",
    "list",
    "show",
    "ack",
    "resolve",
    "report",
    "status",
    "metrics",
    "test",
    "approve",
    "deny",
    "breaker",
    "replay",
    "logs",
    "followup",
    "config",
    "journey",
    "archive",
    "state",
    "cron",
)


class IncidentGroup(typer.core.TyperGroup):
    """Maps every exception to one stderr line and an ExitStatus (traceback only with -v)."""

    def list_commands(self, ctx: Any) -> list[str]:
        rank = {name: i for i, name in enumerate(COMMAND_ORDER)}
        return sorted(super().list_commands(ctx), key=lambda name: rank.get(name, len(rank)))

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        from incident_cli.cli.global_options import hoist
        from incident_cli.cli.plain_params import install

        args = hoist(self, ctx, args)

        # Before any option is processed: keeps pydantic out of start-up. It leans on Typer
        # internals, so a mismatch must only cost speed, never break a command.
        with contextlib.suppress(Exception):
            install(self, ctx)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise
        except Exception as exc:
            env = ctx.obj if isinstance(ctx.obj, Env) else None
            raise typer.Exit(failure_code(exc, env)) from None
        finally:
            if isinstance(ctx.obj, Env):
                ctx.obj.close()


app = typer.Typer(
    cls=IncidentGroup,
    name="incident",
    help="Incident response for Prometheus and Alertmanager, one cron tick at a time.\n\n"
    "-c/--config, --db, --wait, -v and -q may also follow the command.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"incident {__version__}\n")
        raise typer.Exit(0)


@app.callback()
def _global(
    ctx: typer.Context,
    config: str | None = typer.Option(
        None,
        "--config",
        "-c",
        envvar=CONFIG_VAR,
        help="Rule file (default ./incident.yaml; built-in defaults when that does not exist).",
        show_default=False,
    ),
    db: str | None = typer.Option(
        None,
        "--db",
        envvar=DB_VAR,
        help="State DB (default: the config's state.db, relative to the config file).",
        show_default=False,
    ),
    wait: float = typer.Option(
        0.0, "--wait", min=0, help="Seconds to wait for another tick's lock before exit 75."
    ),
    max_runtime: str | None = typer.Option(
        None, "--max-runtime", metavar="D", help=MAX_RUNTIME_HELP, show_default=False
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Say what was done; tracebacks."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    if ctx.obj is None or not isinstance(ctx.obj, Env):
        ctx.obj = Env()
    env: Env = ctx.obj
    env.config_path = config
    env.db_path = db
    env.wait = wait
    set_max_runtime(env, max_runtime)
    env.verbose = verbose and not quiet
    env.quiet = quiet
