"""`incident recover` on the command line: quiet on success, --dry-run, --incident, --json,
exit codes, and the actions in `show --json`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from incident_cli.cli import app
from incident_cli.store.connection import open_db, tick_lock
from tests.support import backend
from tests.support.binaries import run_cli
from tests.support.recover import alert, db_for, fire, load, recovery_config, runs, script

pytestmark = pytest.mark.usefixtures("both_backends")

RULES = """
rules:
  - name: backend-down
    match: {alertname: BackendServiceDown}
    handler: service_down
    group_by: [alertname, service]
    recovery: {commands: [["./fix.sh", "restart", "{service}.service"]], timeout: 10s}
"""


def setup(tmp_path: Path, *services: str) -> Path:
    script(tmp_path, "fix.sh", 'echo "$2" >> runs.log\n')
    path = recovery_config(tmp_path, RULES)
    config = load(path)
    db = db_for(tmp_path)
    now = time.time() - 5
    fire(db, config, now, *[alert(alertname="BackendServiceDown", service=s) for s in services])
    db.close()
    return path


def invoke(tmp_path: Path, *args: str) -> Any:
    runner = CliRunner()
    return runner.invoke(
        app,
        [
            "--config",
            str(tmp_path / "incident.yaml"),
            "--db",
            backend.locate(tmp_path / "state.db"),
            *args,
        ],
    )


def snapshot(tmp_path: Path) -> list[Any]:
    db = db_for(tmp_path)
    tables = ["incidents", "alerts", "timeline", "actions", "notifications", "heartbeats"]
    try:
        return [db.conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in tables]
    finally:
        db.close()


def test_it_is_silent_on_success(tmp_path: Path) -> None:
    setup(tmp_path, "backend")
    result = invoke(tmp_path, "recover")
    assert result.exit_code == 0, result.output
    assert result.output == ""
    assert runs(tmp_path) == ["backend.service"]


def test_dry_run_prints_the_argv_after_substitution_and_changes_nothing(tmp_path: Path) -> None:
    setup(tmp_path, "backend")
    before = snapshot(tmp_path)
    result = invoke(tmp_path, "recover", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "would-run" in result.output
    assert "./fix.sh restart backend.service" in result.output
    assert runs(tmp_path) == []
    assert snapshot(tmp_path) == before


def test_dry_run_shows_a_refusal_without_recording_it(tmp_path: Path) -> None:
    setup(tmp_path, "back;end")
    before = snapshot(tmp_path)
    result = invoke(tmp_path, "recover", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    [action] = json.loads(result.output)["actions"]
    assert action["outcome"] == "would-refuse"
    assert "label 'service'" in action["detail"]
    assert snapshot(tmp_path) == before


def test_json_lists_what_ran(tmp_path: Path) -> None:
    setup(tmp_path, "backend")
    result = invoke(tmp_path, "recover", "--json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["dry_run"] is False
    [action] = body["actions"]
    assert action["outcome"] == "succeeded"
    assert action["argv"] == [["./fix.sh", "restart", "backend.service"]]
    assert action["exit_code"] == 0 and action["attempt"] == 1


def test_incident_limits_the_run_to_one_incident(tmp_path: Path) -> None:
    setup(tmp_path, "one", "two")
    result = invoke(tmp_path, "recover", "--incident", "2")
    assert result.exit_code == 0, result.output
    assert runs(tmp_path) == ["two.service"]


def test_an_unknown_incident_is_an_error(tmp_path: Path) -> None:
    setup(tmp_path, "one")
    result = invoke(tmp_path, "recover", "--incident", "99")
    assert result.exit_code == 1
    assert "no incident 99" in result.output


def test_a_refused_action_exits_1_with_one_line_per_action(tmp_path: Path) -> None:
    setup(tmp_path, "$(id)")
    result = invoke(tmp_path, "recover")
    assert result.exit_code == 1
    assert "refused" in result.output and "label 'service'" in result.output
    assert runs(tmp_path) == []


def test_another_tick_holding_the_lock_is_exit_75(tmp_path: Path) -> None:
    setup(tmp_path, "backend")
    where = backend.locate(tmp_path / "state.db")
    holder = open_db(where)
    with tick_lock(holder, where):
        result = invoke(tmp_path, "recover")
    holder.close()
    assert result.exit_code == 75
    assert runs(tmp_path) == []


def test_show_json_lists_the_actions_with_the_spec_fields(tmp_path: Path) -> None:
    setup(tmp_path, "backend")
    assert invoke(tmp_path, "recover").exit_code == 0
    result = invoke(tmp_path, "show", "1", "--json")
    assert result.exit_code == 0, result.output
    [action] = json.loads(result.output)["actions"]
    assert set(action) == {
        "id",
        "kind",
        "status",
        "attempts",
        "command",
        "exit_code",
        "output",
        "error",
        "planned_at",
        "started_at",
        "finished_at",
    }
    assert action["kind"] == "command" and action["status"] == "succeeded"
    assert action["command"] == ["./fix.sh", "restart", "backend.service"]
    assert action["attempts"] == 1 and action["exit_code"] == 0
    for key in ("planned_at", "started_at", "finished_at"):
        assert action[key].endswith("Z")


def test_recover_as_cron_runs_it(tmp_path: Path) -> None:
    path = setup(tmp_path, "backend")
    db = backend.locate(tmp_path / "state.db")
    result = run_cli(["-c", str(path), "--db", db, "recover"], cwd=tmp_path)
    assert (result.code, result.stdout, result.stderr) == (0, "", "")
    assert runs(tmp_path) == ["backend.service"]
    heartbeat = db_for(tmp_path).conn.execute(
        "SELECT last_exit FROM heartbeats WHERE command = 'recover'"
    )
    assert heartbeat.fetchone() == (0,)


def test_a_program_missing_from_path_exits_1_and_says_so(tmp_path: Path) -> None:
    path = recovery_config(
        tmp_path,
        """
        rules:
          - name: d
            match: {alertname: BackendServiceDown}
            handler: service_down
            recovery: {commands: [[no-such-restart-tool, backend]], max_attempts: 1}
        """,
    )
    db = db_for(tmp_path)
    fire(db, load(path), time.time() - 5, alert(alertname="BackendServiceDown"))
    db.close()
    result = invoke(tmp_path, "recover")
    assert result.exit_code == 1
    assert "no-such-restart-tool: was not found on PATH" in result.output
