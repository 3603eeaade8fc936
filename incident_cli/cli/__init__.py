"""The `incident` command line; `incident_cli.cli:main` is the console script."""

from incident_cli.cli.main import app, main

__all__ = ["app", "main"]
