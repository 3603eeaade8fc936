"""The README's command reference is generated from --help and must be current."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_the_readme_command_reference_matches_the_cli_help() -> None:
    spec = importlib.util.spec_from_file_location(
        "readme_help", REPO / "scripts" / "readme_help.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    current, wanted = module.updated_readme()
    assert current == wanted, "run: python scripts/readme_help.py"


def test_every_command_is_documented_in_the_readme() -> None:
    import typer.main

    from incident_cli.cli import app

    readme = (REPO / "README.md").read_text()
    for name in typer.main.get_command(app).commands:  # type: ignore[attr-defined]
        assert f"incident {name}" in readme, name
