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


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        sys.stderr.write("incident: interrupted\n")
        sys.exit(130)
