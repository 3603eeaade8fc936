"""The console-script entry point, with a fast path for the command cron runs every tick.

`incident run` with the options a crontab line uses is parsed here, without importing Typer
(~30 ms, more than the rest of an idle tick's start-up) or the other commands' modules, and runs
the same code as the Typer command (`cli/ticks.py`), with the same error lines and exit codes
(`context.failure_code`). Anything else — another command, `--help`, `--version`, an option
this parser does not know, a value it is not sure of, a combined short flag (`-vq`), a value
that starts with `-` — goes to the Typer app untouched, so every message about a bad command
line stays Typer's. tests/test_fast_path.py checks both paths agree, and that the options
below are exactly the ones the Typer app declares.
"""

from __future__ import annotations

import errno
import os
import re
import sys

from incident_cli.config.defaults import CONFIG_VAR, DB_VAR

# The `incident` group's options (cli/app.py), by the keyword each sets.
GLOBAL_VALUED = {"-c": "config", "--config": "config", "--db": "db", "--wait": "wait"}
GLOBAL_VALUED["--max-runtime"] = "max_runtime"
GLOBAL_FLAGS = {"-v": "verbose", "--verbose": "verbose", "-q": "quiet", "--quiet": "quiet"}
# `run`'s own options (cli/ops.py). --max-runtime after `run` is run's own and wins.
RUN_VALUED = {"--max-runtime": "run_max_runtime", "--every": "every", "--for": "span"}
RUN_FLAGS = {"--dry-run": "dry_run", "--json": "as_json"}
# The group's options a user may also type after the command (cli/global_options.py).
HOISTED_VALUED = {k: v for k, v in GLOBAL_VALUED.items() if k != "--max-runtime"}

_PLAIN_SECONDS = re.compile(r"[0-9]{1,15}(?:\.[0-9]{1,15})?")  # --wait: plain_params' float


def parse_run(args: list[str]) -> dict[str, str | bool] | None:
    """The options of an `incident run` command line, or None for anything else (Typer's)."""
    found: dict[str, str | bool] = {}
    command = False
    i = 0
    while i < len(args):
        token = args[i]
        if not command and token == "run":
            command = True
            i += 1
            continue
        valued = {**RUN_VALUED, **HOISTED_VALUED} if command else GLOBAL_VALUED
        flags = {**RUN_FLAGS, **GLOBAL_FLAGS} if command else GLOBAL_FLAGS
        name, eq, inline = token.partition("=") if token.startswith("--") else (token, "", "")
        if name in valued:
            if eq:
                value = inline
            elif i + 1 < len(args):
                i += 1
                value = args[i]
            else:
                return None
            if not value or value.startswith("-"):
                return None
            if valued[name] == "wait" and not _PLAIN_SECONDS.fullmatch(value):
                return None
            found[valued[name]] = value
        elif token in flags:
            found[flags[token]] = True
        else:
            return None
        i += 1
    return found if command else None


def run_fast(found: dict[str, str | bool]) -> int:
    """`incident run` as the Typer group and command would run it: the exit code."""
    from incident_cli.cli.context import Env, failure_code, set_max_runtime
    from incident_cli.cli.ticks import run_command

    def text(key: str) -> str | None:
        value = found.get(key)
        return value if isinstance(value, str) else None

    env: Env | None = None
    try:
        try:
            env = Env()
            # As Click does: a variable's value when the option is absent, unless it is empty.
            env.config_path = text("config") or os.environ.get(CONFIG_VAR) or None
            env.db_path = text("db") or os.environ.get(DB_VAR) or None
            env.wait = float(text("wait") or 0.0)
            set_max_runtime(env, text("max_runtime"))
            env.verbose = bool(found.get("verbose")) and not found.get("quiet")
            env.quiet = bool(found.get("quiet"))
            return run_command(
                env,
                dry_run=bool(found.get("dry_run")),
                as_json=bool(found.get("as_json")),
                max_runtime=text("run_max_runtime"),
                every=text("every"),
                span=text("span"),
            )
        except Exception as exc:
            return failure_code(exc, env)
        finally:
            if env is not None:
                env.close()
    except KeyboardInterrupt:
        return 130  # as Typer: no message
    except OSError as exc:
        if exc.errno != errno.EPIPE:
            raise
        # As Typer: a closed pipe ends the command with 1 and no further complaint.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.dup2(devnull, sys.stderr.fileno())
        return 1


def main() -> None:
    """Console-script entry point."""
    found = parse_run(sys.argv[1:])
    if found is not None:
        sys.exit(run_fast(found))
    from incident_cli.cli.main import main as typer_main

    typer_main()
