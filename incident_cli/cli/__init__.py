"""The `incident` command line; `incident_cli.cli:main` is the console script."""

from typing import Any

from incident_cli.cli.entry import main

__all__ = ["app", "main"]


def __getattr__(name: str) -> Any:
    # The Typer app is built only when asked for: `main` runs `incident run` without it.
    if name == "app":
        from incident_cli.cli.main import app

        return app
    raise AttributeError(name)
