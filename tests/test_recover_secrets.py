"""A secret in a rule's commands runs as configured but is never stored: not in the first
attempt, not in its retries, not in diagnostics, not in `show`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from incident_cli.cli import app
from incident_cli.recovery.tick import recover_due
from tests.support import backend
from tests.support.notify import dump_db
from tests.support.recover import T0, actions, alert, db_for, fire, load, recovery_config, script

pytestmark = pytest.mark.usefixtures("both_backends")

SECRET = "https://hooks.example.test/services/T0/B0/s3cr3t-webhook-token"

RULES = """
channels:
  slack: {type: slack, webhook_url: "${SLACK_WEBHOOK_URL}"}
defaults: {notify: []}
rules:
  - name: backend-down
    match: {alertname: BackendServiceDown}
    handler: service_down
    group_by: [alertname, service]
    recovery:
      commands: [["./fix.sh", "${SLACK_WEBHOOK_URL}"], ["./fix.sh", "again=${SLACK_WEBHOOK_URL}"]]
      timeout: 10s
      max_attempts: 3
      backoff: 10s
  - name: slow
    match: {alertname: Slow}
    handler: performance_issue
    diagnostics: {commands: [["./diag.sh", "${SLACK_WEBHOOK_URL}"]], queries: []}
"""


def every_value(db_path: Path) -> list[str]:
    """Every row of every table, as one line of JSON each (either backend)."""
    return dump_db(db_path).splitlines()


def test_a_secret_in_recovery_commands_runs_but_is_stored_nowhere_even_in_retries(
    tmp_path: Path,
) -> None:
    # The second step fails, so every attempt fails and plans a retry from the stored row.
    script(tmp_path, "fix.sh", 'echo "$1" >> runs.log\ncase "$1" in again=*) exit 1;; esac\n')
    script(tmp_path, "diag.sh", 'echo "$1" >> diag.log\necho "diagnosed $1"\n')
    env = {"SLACK_WEBHOOK_URL": SECRET}
    path = recovery_config(tmp_path, RULES)
    config = load(path, env)
    db = db_for(tmp_path)
    fire(
        db, config, T0, alert(alertname="BackendServiceDown", service="b"), alert(alertname="Slow")
    )
    # Attempt 1, too early, retry 2, retry 3; a pending retry is checked as well as a run one.
    for at in (T0 + 1, T0 + 5, T0 + 12, T0 + 40):
        recover_due(db, config, at)
        assert not [v for v in every_value(tmp_path / "state.db") if "s3cr3t" in v], at

    # The real argv reached the commands on every attempt, the retries included.
    assert (tmp_path / "runs.log").read_text().splitlines() == [SECRET, f"again={SECRET}"] * 3
    assert (tmp_path / "diag.log").read_text().splitlines() == [SECRET]
    fixes = [a for a in actions(db, 1) if a["kind"] == "command"]
    assert [a["attempts"] for a in fixes] == [1, 2, 3]
    assert all(a["status"] == "failed" for a in fixes)
    assert fixes[1]["command"] == ["./fix.sh", "***"]
    db.close()

    assert not [v for v in every_value(tmp_path / "state.db") if "s3cr3t" in v]
    runner = CliRunner()
    base = ["--config", str(path), "--db", backend.locate(tmp_path / "state.db")]
    for incident in ("1", "2"):
        for extra in (["--json"], []):
            result = runner.invoke(app, [*base, "show", incident, *extra], env=env)
            assert result.exit_code == 0, result.output
            assert "s3cr3t" not in result.output
            if extra:
                json.loads(result.output)


def plan_one(tmp_path: Path) -> Path:
    script(tmp_path, "fix.sh", 'echo "$1" >> runs.log\n')
    script(tmp_path, "diag.sh", "true\n")
    path = recovery_config(tmp_path, RULES)
    db = db_for(tmp_path)
    config = load(path, {"SLACK_WEBHOOK_URL": SECRET})
    fire(db, config, T0, alert(alertname="BackendServiceDown", service="b"))
    db.close()
    return path


def test_a_rotated_secret_runs_with_its_new_value(tmp_path: Path) -> None:
    path = plan_one(tmp_path)
    rotated = "https://hooks.example.test/services/T0/B0/rotated-token"
    result = recover_due(db_for(tmp_path), load(path, {"SLACK_WEBHOOK_URL": rotated}), T0 + 1)
    assert [a.outcome for a in result.actions] == ["succeeded"]
    assert (tmp_path / "runs.log").read_text().splitlines() == [rotated, f"again={rotated}"]


def test_an_action_runs_what_the_rule_configures_when_it_runs_never_the_mask(
    tmp_path: Path,
) -> None:
    path = plan_one(tmp_path)
    # The operator edits the rule before the action runs: the action is planned again from the
    # config, so the edited command runs, and nothing ever runs with "***" as an argument.
    script(tmp_path, "new.sh", 'echo "new $1" >> runs.log\n')
    path.write_text(
        path.read_text().replace('["./fix.sh", "${SLACK_WEBHOOK_URL}"]', '["./new.sh"]')
    )
    result = recover_due(db_for(tmp_path), load(path, {"SLACK_WEBHOOK_URL": SECRET}), T0 + 1)
    assert [a.outcome for a in result.actions] == ["succeeded"]
    assert (tmp_path / "runs.log").read_text().splitlines() == ["new ", f"again={SECRET}"]
