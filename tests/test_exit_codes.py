"""One outcome, one exit status and one line, whichever command meets it: a stage run alone
(`poll`, `notify`, `recover`) and the same stage inside `incident run` exit the same, say the
same line (prefixed with the stage's name inside `run`) and leave the same heartbeat.

Each command is a real `incident` process, started as cron starts it; a state DB held by
another process waits out the busy timeout (10 s), so those commands run side by side."""

from __future__ import annotations

import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from tests.support.binaries import CliResult, cli_env, run_cli
from tests.support.locks import EXCLUSIVE, holding
from tests.support.recover import alert, fire, load, script

CONFIG = """\
sources: {}
defaults: {notify: [hook]}
channels:
  hook: {type: webhook, url: "http://127.0.0.1:9/hook"}
rules:
  - name: backend-down
    match: {alertname: BackendServiceDown}
    handler: service_down
    group_by: [alertname, service]
    recovery: {commands: [["./fix.sh", "restart", "{service}.service"]], timeout: 10s}
"""


def with_work(where: Path, service: str = "backend") -> Path:
    """A state DB with work for every stage: an open incident, its firing notification queued
    and its recovery action due. Returns the DB's path."""
    from incident_cli.store.connection import open_db

    where.mkdir()
    script(where, "fix.sh", "exit 0\n")
    (where / "incident.yaml").write_text(CONFIG)
    db_path = where / "incident.db"
    db = open_db(db_path)
    try:
        fire(
            db,
            load(where / "incident.yaml"),
            time.time(),
            alert(alertname="BackendServiceDown", service=service),
        )
    finally:
        db.close()
    return db_path


def side_by_side(runs: dict[str, tuple[Path, list[str]]]) -> dict[str, CliResult]:
    """`incident ARGS` in each directory at once (each waits on its own DB)."""
    started = {
        name: subprocess.Popen(
            [sys.executable, "-m", "incident_cli", *args],
            cwd=cwd,
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        for name, (cwd, args) in runs.items()
    }
    results = {}
    for name, process in started.items():
        out, err = process.communicate(timeout=120)
        results[name] = CliResult(process.returncode, out, err)
    return results


def busy_line(db: Path) -> str:
    return (
        f"the state DB {db} is locked by another process for longer than the busy timeout"
        " (10 s); nothing was changed, the next tick tries again"
    )


COMMANDS = ("poll", "notify", "recover", "run")


def test_a_busy_state_db_is_75_with_one_clear_line_alone_and_inside_run(
    tmp_path: Path,
) -> None:
    dbs = {name: with_work(tmp_path / name) for name in COMMANDS}
    with ExitStack() as stack:
        for db in dbs.values():
            stack.enter_context(holding(db, EXCLUSIVE))
        results = side_by_side({name: (dbs[name].parent, [name]) for name in COMMANDS})
    for name, result in results.items():
        assert "Traceback" not in result.stderr, name
        assert (result.code, result.stdout, result.stderr) == (
            75,
            "",
            f"incident: {busy_line(dbs[name])}\n",
        ), name


def test_a_stage_that_met_a_busy_db_leaves_the_same_heartbeat_alone_and_inside_run(
    tmp_path: Path,
) -> None:
    # The holder lets go after 15 s: after the stage's first write gave up (10 s after it
    # began, within the first few seconds), before its heartbeat's write would give up.
    dbs = {name: with_work(tmp_path / name) for name in COMMANDS}
    with ExitStack() as stack:
        for db in dbs.values():
            stack.enter_context(holding(db, EXCLUSIVE, seconds=15))
        results = side_by_side({name: (dbs[name].parent, [name]) for name in COMMANDS})
    for name in COMMANDS:
        assert results[name].code == 75, (name, results[name].stderr)
        status = run_cli(["status", "--json"], cwd=dbs[name].parent)
        beats = {c["command"]: c for c in status.json()["commands"]}
        stage = "poll" if name == "run" else name  # inside run, poll is the first to write
        assert (beats[stage]["last_exit"], beats[stage]["last_error"]) == (
            75,
            busy_line(dbs[name]),
        ), name
    ran = run_cli(["status", "--json"], cwd=dbs["run"].parent).json()["commands"]
    assert {c["command"]: c["last_exit"] for c in ran} == {
        "run": 75,
        "poll": 75,
        "detect-anomalies": 0,
        "sync": 0,
        "notify": 0,
        "recover": 0,
    }


def test_an_action_that_could_not_start_says_the_same_line_alone_and_inside_run(
    tmp_path: Path,
) -> None:
    dbs = {name: with_work(tmp_path / name, service="$(id)") for name in ("recover", "run")}
    results = side_by_side({name: (db.parent, ["-q", name]) for name, db in dbs.items()})
    said = (
        "action 1 (command) of incident 1 refused: label 'service' contains '$', which is"
        " not in [A-Za-z0-9_.:@/+=-]"
    )
    assert results["recover"].code == 1
    assert results["recover"].stderr.splitlines() == [f"incident: {said}"]
    assert results["run"].code == 1
    assert results["run"].stderr.splitlines() == [f"incident: recover: {said}"]
