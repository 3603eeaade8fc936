"""Regenerate (or check) the README's command reference from the CLI's own --help text.

python scripts/readme_help.py          # rewrite the block in README.md
python scripts/readme_help.py --check  # exit 1 when the README is out of date (CI)
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

BEGIN = "<!-- BEGIN GENERATED HELP (scripts/readme_help.py) -->"
END = "<!-- END GENERATED HELP -->"


def command_paths() -> list[list[str]]:
    """Every command and sub-command, depth first, as argv lists."""
    import typer.main

    from incident_cli.cli import app

    paths: list[list[str]] = [[]]

    def walk(group: object, prefix: list[str]) -> None:
        # In the order --help lists them (a tick's stages first), not alphabetically.
        commands = getattr(group, "commands", {})
        for name in group.list_commands(None) if commands else []:
            paths.append([*prefix, name])
            walk(commands[name], [*prefix, name])

    walk(typer.main.get_command(app), [])
    return paths


def render() -> str:
    from typer.testing import CliRunner

    from incident_cli.cli import app

    runner = CliRunner()
    parts = [BEGIN, ""]
    for path in command_paths():
        result = runner.invoke(
            app,
            [*path, "--help"],
            env={"COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb"},
            terminal_width=100,
        )
        title = " ".join(["incident", *path])
        parts += [f"#### `{title}`", "", "```text", result.stdout.rstrip(), "```", ""]
    parts.append(END)
    return "\n".join(parts)


def updated_readme() -> tuple[str, str]:
    readme = (REPO / "README.md").read_text()
    start, end = readme.index(BEGIN), readme.index(END) + len(END)
    return readme, readme[:start] + render() + readme[end:]


def main() -> int:
    current, wanted = updated_readme()
    if "--check" in sys.argv:
        if current != wanted:
            print("README.md's command reference is out of date: run python scripts/readme_help.py")
            return 1
        return 0
    (REPO / "README.md").write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
