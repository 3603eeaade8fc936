"""`incident run` as cron runs it goes by the fast path (cli/entry.py): no Typer, no requests,
and exactly what the Typer command does — same exit code, same output, same state — for every
option a crontab line uses. Every other command line, and every command, still reaches Typer."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer.main

from incident_cli.cli import app
from incident_cli.cli.entry import (
    GLOBAL_FLAGS,
    GLOBAL_VALUED,
    RUN_FLAGS,
    RUN_VALUED,
    parse_run,
)
from tests.support.binaries import cli_env, free_port, imported_modules, serve_get

# The Typer path, exactly as the console script ran it before the fast path existed.
TYPER = "import sys; from incident_cli.cli.main import main; sys.argv[0] = 'incident'; main()"


@pytest.fixture(scope="module")
def source_url() -> Iterator[str]:
    """A reachable Prometheus with no alerts: an idle tick."""
    body = json.dumps({"status": "success", "data": {"alerts": []}}).encode()
    with serve_get(lambda headers: (200, body)) as url:
        yield url


def workdir(base: Path, url: str) -> Path:
    base.mkdir()
    (base / "incident.yaml").write_text(
        f"""
sources:
  prometheus: {{type: prometheus, url: "{url}", timeout: 5s}}
state: {{db: incident.db}}
channels:
  hook: {{type: webhook, url: "http://127.0.0.1:9/unused"}}
defaults: {{notify: [hook]}}
"""
    )
    (base / "other.yaml").write_text((base / "incident.yaml").read_text())
    return base


def run(
    argv: list[str], cwd: Path, *, typer_path: bool, env: dict[str, str]
) -> tuple[int, str, str]:
    head = [sys.executable, "-c", TYPER] if typer_path else [sys.executable, "-m", "incident_cli"]
    done = subprocess.run(
        [*head, *argv], cwd=cwd, env=cli_env(env), capture_output=True, text=True, timeout=60
    )
    return done.returncode, done.stdout, done.stderr


def state(cwd: Path) -> list[tuple[str, int]]:
    """The heartbeats the command left (command, exit code), and nothing else changed."""
    db = cwd / "incident.db"
    if not db.exists():
        return []
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT command, last_exit FROM heartbeats ORDER BY command")
        return [(str(c), int(e)) for c, e in rows]
    finally:
        conn.close()


def normal(text: str) -> str:
    """Times and durations differ between two runs, and Click names the program by how it was
    started (`python -m incident_cli` here, `incident` there); nothing else may differ."""
    text = text.replace("python -m incident_cli", "incident")
    text = re.sub(r"\d{4}-\d\d-\d\dT[0-9:.]+Z", "<time>", text)
    text = re.sub(
        r'"(started_at|finished_at|duration_seconds|took_seconds)": [0-9.e-]+', r'"\1": 0', text
    )
    return re.sub(r"\d+(\.\d+)?s\b", "<s>", text)


CRON_LINES = [
    ["run"],
    ["-c", "incident.yaml", "run"],
    ["--config=incident.yaml", "--quiet", "run"],
    ["run", "-c", "incident.yaml", "-q"],
    ["-q", "--wait", "5", "run", "--every", "1s", "--for", "1s"],
    ["--wait", "0.5", "--max-runtime", "1s", "run", "--every", "1s", "--for", "1s", "--json"],
    ["run", "--max-runtime=20s", "--json"],
    ["-v", "run", "--dry-run"],
    ["run", "--verbose", "--db", "elsewhere.db"],
    ["--db=elsewhere.db", "-c", "other.yaml", "run", "--wait", "1"],
    ["run", "--every", "5s"],  # --every without --for: a usage error (2)
    ["run", "--every", "5s", "--for", "1s"],
    ["--max-runtime", "10s", "run", "--every", "5s", "--for", "5s"],
    ["run", "--every", "0s", "--for", "5s"],
    ["run", "--max-runtime", "soon"],
    ["--max-runtime", "-"],  # no command: Typer's
    ["-c", "missing.yaml", "run"],  # a named config that does not exist: 78
    ["run", "--every", "1s", "--for", "1s", "-c", "incident.yaml", "--config", "other.yaml"],
]


@pytest.mark.parametrize("argv", CRON_LINES, ids=lambda a: " ".join(a))
def test_run_by_the_fast_path_does_what_the_typer_command_does(
    argv: list[str], tmp_path: Path, source_url: str
) -> None:
    fast, slow = workdir(tmp_path / "fast", source_url), workdir(tmp_path / "slow", source_url)
    ours = run(argv, fast, typer_path=False, env={})
    theirs = run(argv, slow, typer_path=True, env={})
    assert (ours[0], normal(ours[1]), normal(ours[2])) == (
        theirs[0],
        normal(theirs[1]),
        normal(theirs[2]),
    )
    assert state(fast) == state(slow)
    assert "Traceback" not in ours[2]


@pytest.mark.parametrize(
    "env",
    [{"INCIDENT_CONFIG": "other.yaml"}, {"INCIDENT_DB": "via-env.db"}, {"INCIDENT_CONFIG": ""}],
    ids=lambda e: ",".join(f"{k}={v}" for k, v in e.items()),
)
def test_the_fast_path_reads_the_same_variables(
    env: dict[str, str], tmp_path: Path, source_url: str
) -> None:
    fast, slow = workdir(tmp_path / "fast", source_url), workdir(tmp_path / "slow", source_url)
    ours = run(["run", "--json"], fast, typer_path=False, env=env)
    theirs = run(["run", "--json"], slow, typer_path=True, env=env)
    assert (ours[0], normal(ours[1]), ours[2]) == (theirs[0], normal(theirs[1]), theirs[2])
    assert sorted(p.name for p in fast.iterdir()) == sorted(p.name for p in slow.iterdir())


def test_a_cron_tick_imports_neither_typer_nor_requests_nor_what_only_work_needs(
    tmp_path: Path, source_url: str
) -> None:
    cwd = workdir(tmp_path / "w", source_url)
    # The first tick creates the state DB: sqlite-utils (which imports click) migrates it.
    assert run(["run"], cwd, typer_path=False, env={})[0] == 0
    args = ["-q", "--wait", "5", "run", "--every", "1s", "--for", "1s"]
    heavy = ("typer", "click", "requests", "urllib3", "rich", "pydantic", "hashlib", "shutil")
    modules, done = imported_modules(cwd, *args, heavy=heavy)
    assert done.returncode == 0, done.stderr
    assert modules == []
    assert ("run", 0) in state(cwd)  # it did run the ticks


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--help"],
        ["run", "--help"],
        ["-h", "run"],
        ["--version"],
        ["-vq", "run"],  # combined short flags: Click's rules
        ["run", "extra"],
        ["run", "--wait", "-1"],
        ["--wait", "1e3", "run"],
        ["run", "--every"],
        ["run", "--every", "-5s"],
        ["-c", "", "run"],
        ["run", "--dry-run=yes"],
        ["run", "--", "-v"],
        ["list"],
        ["status", "run"],
        ["-c", "run"],
    ],
    ids=repr,
)
def test_anything_but_a_plain_run_goes_to_typer(argv: list[str]) -> None:
    assert parse_run(argv) is None


def test_the_fast_path_knows_exactly_the_options_typer_declares() -> None:
    """A new option of the group or of `run` must be taught to the fast path (or the fast
    path would run without it)."""
    group = typer.main.get_command(app)
    ctx = group.make_context("incident", ["run"], resilient_parsing=True)

    def options(command: object) -> tuple[set[str], set[str], set[tuple[str, str]]]:
        valued, flags, envvars = set(), set(), set()
        for param in command.get_params(ctx):  # type: ignore[attr-defined]
            names = {*param.opts, *param.secondary_opts}
            if names & {"-h", "--help", "--version"}:
                continue
            (flags if param.is_flag else valued).update(names)
            if param.envvar:
                envvars.add((param.name, param.envvar))
        return valued, flags, envvars

    valued, flags, envvars = options(group)
    assert valued == set(GLOBAL_VALUED) and flags == set(GLOBAL_FLAGS)
    assert envvars == {("config", "INCIDENT_CONFIG"), ("db", "INCIDENT_DB")}
    valued, flags, envvars = options(group.get_command(ctx, "run"))  # type: ignore[attr-defined]
    assert valued == set(RUN_VALUED) and flags == set(RUN_FLAGS) and not envvars


def test_every_registered_command_is_listed_and_reachable(tmp_path: Path) -> None:
    group = typer.main.get_command(app)
    ctx = group.make_context("incident", [], resilient_parsing=True)
    names = group.list_commands(ctx)  # type: ignore[attr-defined]
    assert "run" in names and len(names) >= 20
    env = cli_env()
    listing = subprocess.run(
        [sys.executable, "-m", "incident_cli", "--help"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert listing.returncode == 0
    listed = re.findall(r"^\s*│?\s*([a-z][a-z-]+)\s", listing.stdout, re.M)
    for name in names:
        assert name in listed, name
        command = group.get_command(ctx, name)  # type: ignore[attr-defined]
        subs = command.list_commands(ctx) if hasattr(command, "list_commands") else [None]
        for sub in subs:
            argv = [name, *([sub] if sub else []), "--help"]
            done = subprocess.run(
                [sys.executable, "-m", "incident_cli", *argv],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
            )
            assert done.returncode == 0, (argv, done.stderr)
            assert "Usage:" in done.stdout, argv


def test_a_tick_reads_its_source_even_when_the_port_is_closed(tmp_path: Path) -> None:
    """A source that is down: the same line and exit 75 by both paths (no requests involved)."""
    url = f"http://127.0.0.1:{free_port()}"
    fast, slow = workdir(tmp_path / "fast", url), workdir(tmp_path / "slow", url)
    ours = run(["run"], fast, typer_path=False, env={})
    theirs = run(["run"], slow, typer_path=True, env={})
    assert ours == theirs
    assert ours[0] == 75 and "source prometheus: connection refused" in ours[2]
