"""-c/--config, --db, --wait, -v and -q are accepted after the command as well as before it."""

from __future__ import annotations

import json
from pathlib import Path

from incident_cli.cli import app
from incident_cli.cli.global_options import hoist
from tests.support.binaries import invoke, run_cli

RULES = "sources: {}\nrules: []\nstate: {db: from-config.db}\n"


def moved(*args: str) -> list[str]:
    import typer.main

    group = typer.main.get_command(app)
    ctx = group.make_context("incident", ["list"], resilient_parsing=True)
    return hoist(group, ctx, list(args))


def test_a_config_and_a_db_after_the_command_are_used(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_text(RULES)
    result = invoke("list", "-c", str(tmp_path / "x.yaml"), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == []
    assert (tmp_path / "from-config.db").exists()

    result = invoke(
        "list", "--json", "--db", str(tmp_path / "other.db"), "-c", str(tmp_path / "x.yaml")
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "other.db").exists()


def test_verbose_and_quiet_after_the_command_change_what_it_prints(tmp_path: Path) -> None:
    (tmp_path / "incident.yaml").write_text(RULES)
    quiet = run_cli(["notify", "-q"], cwd=tmp_path)
    loud = run_cli(["notify", "-v"], cwd=tmp_path)
    assert quiet.code == 0 and loud.code == 0, quiet.stderr + loud.stderr
    assert quiet.stdout == ""
    assert loud.stdout != ""


def test_a_later_value_wins_over_an_earlier_one() -> None:
    assert moved("--db", "a.db", "list", "--db", "b.db") == ["--db", "a.db", "--db", "b.db", "list"]
    assert moved("list", "--wait=3", "--json") == ["--wait=3", "list", "--json"]
    assert moved("config", "show", "-c", "x.yaml") == ["-c", "x.yaml", "config", "show"]


def test_a_value_of_the_commands_own_option_and_anything_after_double_dash_stay() -> None:
    assert moved("ack", "1", "--note", "-v") == ["ack", "1", "--note", "-v"]
    assert moved("ack", "1", "--", "-v") == ["ack", "1", "--", "-v"]
    assert moved("list", "--status", "open") == ["list", "--status", "open"]
    assert moved("--help") == ["--help"]


def test_the_note_of_ack_may_be_a_dash_v(tmp_path: Path) -> None:
    (tmp_path / "incident.yaml").write_text(RULES)
    result = invoke("ack", "1", "--note", "-v")
    assert result.exit_code == 1  # no incident 1: the -v was the note, not a global option
    assert "no incident 1" in result.stderr
