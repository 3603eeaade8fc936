"""Regenerate (or check) docs/commands.md's reference from the CLI's own --help text.

python scripts/commands_doc.py          # rewrite the block in docs/commands.md (make docs)
python scripts/commands_doc.py --check  # exit 1 when the page is out of date
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

BEGIN = "<!-- BEGIN GENERATED HELP (scripts/commands_doc.py) -->"
PAGE = REPO / "docs" / "commands.md"
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
        parts += [f"### `{title}`", "", "```text", result.stdout.rstrip(), "```", ""]
    parts.append(END)
    return "\n".join(parts)


def updated_page() -> tuple[str, str]:
    """The page as it is and as it should be."""
    page = PAGE.read_text()
    start, end = page.index(BEGIN), page.index(END) + len(END)
    return page, page[:start] + render() + page[end:]


def main() -> int:
    current, wanted = updated_page()
    if "--check" in sys.argv:
        if current != wanted:
            print("docs/commands.md's reference is out of date: run make docs")
            return 1
        return 0
    PAGE.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
