"""Registers every command module on the app, and the console-script entry point."""

from __future__ import annotations

import sys

from incident_cli.cli import anomaly as _anomaly  # noqa: F401
from incident_cli.cli import followup as _followup  # noqa: F401
from incident_cli.cli import incidents as _incidents  # noqa: F401
from incident_cli.cli import logs as _logs  # noqa: F401
from incident_cli.cli import notify as _notify  # noqa: F401
from incident_cli.cli import ops as _ops  # noqa: F401
from incident_cli.cli import recover as _recover  # noqa: F401
from incident_cli.cli import replay as _replay  # noqa: F401
from incident_cli.cli import report as _report  # noqa: F401
from incident_cli.cli import safety as _safety  # noqa: F401
from incident_cli.cli import state as _state  # noqa: F401
from incident_cli.cli import sync as _sync  # noqa: F401
from incident_cli.cli.app import app

__all__ = ["app", "main"]

# `from incident_cli.cli import app` is the Typer app: importing the `cli.app` module above
# made the package's `app` that module (the package builds the app only when asked for it).
_package = sys.modules["incident_cli.cli"]
_package.app = app  # type: ignore[attr-defined]


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        sys.stderr.write("incident: interrupted\n")
        sys.exit(130)
