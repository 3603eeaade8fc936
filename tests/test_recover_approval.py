"""Approval gates: with `recovery.approval: required` (or RECOVERY_APPROVAL=required) a planned
command waits as `awaiting_approval`, an `approval` notification carries its argv (secrets
masked) and the command that approves it, `incident approve` lets the next `recover` run it,
`incident deny` stops it for good, and past `approval_timeout` it expires and the incident
escalates once. The timeline says who decided and when."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from incident_cli.config.model import Config
from incident_cli.recovery.tick import recover_due
from tests.support import backend
from tests.support.binaries import CliResult, run_cli
from tests.support.notify import receiver
from tests.support.recover import (
    T0,
    actions,
    alert,
    db_for,
    fire,
    load,
    recovery_config,
    script,
    timeline,
)

pytestmark = pytest.mark.usefixtures("both_backends")

SECRET = "s3cr3t-pass-1234"

RULES = """
sources:
  prometheus:
    type: prometheus
    url: http://127.0.0.1:9
    basic_auth: {{username: ops, password: "${{PROM_PASSWORD}}"}}
defaults: {{notify: [hook]}}
channels:
  hook: {{type: webhook, url: "{url}"}}
  pager: {{type: webhook, url: "{url}/pager"}}
escalation: {{channels: [pager]}}
rules:
  - name: down
    match: {{alertname: Down}}
    handler: service_down
    group_by: [service]
    recovery:
      commands: [[./fix.sh, "{{service}}", "${{PROM_PASSWORD}}"]]
      timeout: 10s
      {approval}
"""

ENV = {"PROM_PASSWORD": SECRET}


def setup(tmp_path: Path, approval: str, url: str = "http://127.0.0.1:9/hook") -> Config:
    script(tmp_path, "fix.sh", 'echo "$1" >> runs.log\n')
    body = RULES.format(url=url, approval=approval)
    # recovery_config puts a plain source first; this file names its own.
    path = recovery_config(tmp_path, "")
    path.write_text("incidents: {resolve_after: 0s}\n" + body)
    return load(path, ENV)


def cli(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> CliResult:
    where = backend.locate(tmp_path / "state.db")
    return run_cli(["--db", where, *args], cwd=tmp_path, env={**ENV, **(env or {})})


def runs(tmp_path: Path) -> list[str]:
    log = tmp_path / "runs.log"
    return log.read_text().splitlines() if log.exists() else []


def fire_down(tmp_path: Path, config: Config, now: float, service: str = "api") -> None:
    db = db_for(tmp_path)
    fire(db, config, now, alert(alertname="Down", service=service))
    db.close()


def action_rows(tmp_path: Path, incident_id: int = 1) -> list[dict[str, Any]]:
    db = db_for(tmp_path)
    rows = actions(db, incident_id)
    db.close()
    return rows


def events(tmp_path: Path, incident_id: int = 1) -> list[dict[str, Any]]:
    db = db_for(tmp_path)
    found = timeline(db, incident_id)
    db.close()
    return found


def test_a_gated_command_waits_is_announced_and_runs_once_approved_as_cron_runs_it(
    tmp_path: Path,
) -> None:
    with receiver() as hook:
        config = setup(tmp_path, "approval: required", hook.url + "/hook")
        fire_down(tmp_path, config, time.time() - 5)

        first = cli(tmp_path, "recover")
        assert first.code == 0, first.stderr
        assert runs(tmp_path) == []
        [action] = action_rows(tmp_path)
        assert action["status"] == "awaiting_approval"

        assert cli(tmp_path, "notify").code == 0
        [request] = [r.body for r in hook.received if r.body.get("event") == "approval"]
        assert hook.received[0].path == "/hook"
        assert request["status"] == "approval needed"
        assert request["details"]["action_id"] == action["id"]
        assert request["details"]["argv"] == [["./fix.sh", "api", "***"]]
        approve = f"incident approve {action['id']} --by NAME"
        assert request["details"]["approve_command"] == approve
        assert f"Approve: {approve}" in request["text"]
        assert "./fix.sh api ***" in request["text"]
        assert SECRET not in str([r.body for r in hook.received])

        # Not yet approved: another tick changes nothing and sends nothing new.
        assert cli(tmp_path, "recover").code == 0
        assert runs(tmp_path) == []
        assert cli(tmp_path, "notify").code == 0
        assert len([r for r in hook.received if r.body.get("event") == "approval"]) == 1

        approved = cli(tmp_path, "approve", str(action["id"]), "--by", "alice")
        assert approved.code == 0, approved.stderr
        assert f"action {action['id']} approved by alice" in approved.stdout
        assert cli(tmp_path, "recover").code == 0
        assert runs(tmp_path) == ["api"]
        [after] = action_rows(tmp_path)
        assert after["status"] == "succeeded"
        [approval_event] = [e for e in events(tmp_path) if e["kind"] == "action_approved"]
        assert "approved by alice" in approval_event["message"]
        assert approval_event["data"]["by"] == "alice"
        assert approval_event["at"].endswith("Z")


def test_deny_by_incident_id_stops_the_command_for_good(tmp_path: Path) -> None:
    config = setup(tmp_path, "approval: required")
    fire_down(tmp_path, config, time.time() - 5)
    assert cli(tmp_path, "recover").code == 0

    denied = cli(tmp_path, "deny", "incident:1", "--by", "bob", "--note", "not during the sale")
    assert denied.code == 0, denied.stderr
    [action] = action_rows(tmp_path)
    assert action["status"] == "skipped"
    assert action["error"] == "denied by bob: not during the sale"
    assert cli(tmp_path, "recover").code == 0
    assert runs(tmp_path) == []
    [event] = [e for e in events(tmp_path) if e["kind"] == "action_denied"]
    assert event["data"] == {"action_id": action["id"], "by": "bob", "note": "not during the sale"}

    again = cli(tmp_path, "approve", "1", "--by", "alice")
    assert again.code == 1
    assert "nothing awaits approval" in again.stderr
    assert "Traceback" not in again.stderr


def test_recovery_approval_required_in_the_environment_gates_every_rule(tmp_path: Path) -> None:
    config = setup(tmp_path, "")
    fire_down(tmp_path, config, time.time() - 5)
    result = cli(tmp_path, "recover", env={"RECOVERY_APPROVAL": "required"})
    assert result.code == 0, result.stderr
    assert runs(tmp_path) == []
    assert [a["status"] for a in action_rows(tmp_path)] == ["awaiting_approval"]


def test_without_approval_the_command_runs_at_once(tmp_path: Path) -> None:
    config = setup(tmp_path, "")
    fire_down(tmp_path, config, time.time() - 5)
    assert cli(tmp_path, "recover").code == 0
    assert runs(tmp_path) == ["api"]


def test_past_the_timeout_it_expires_and_the_incident_escalates_once(tmp_path: Path) -> None:
    config = setup(tmp_path, "approval: required\n      approval_timeout: 10m")
    fire_down(tmp_path, config, T0)
    db = db_for(tmp_path)
    recover_due(db, config, T0 + 1)
    assert [a["status"] for a in actions(db)] == ["awaiting_approval"]
    recover_due(db, config, T0 + 300)  # within the timeout: still waiting
    assert [a["status"] for a in actions(db)] == ["awaiting_approval"]

    result = recover_due(db, config, T0 + 700)
    assert result.escalated == [1]
    assert [a["status"] for a in actions(db)] == ["expired"]
    kinds = [e["kind"] for e in timeline(db)]
    assert kinds.count("approval_expired") == 1
    assert kinds.count("escalated") == 1
    escalations = db.conn.execute(
        "SELECT channel FROM notifications WHERE event = 'escalation'"
    ).fetchall()
    assert escalations == [("pager",)]

    assert recover_due(db, config, T0 + 1400).escalated == []
    assert [e["kind"] for e in timeline(db)].count("escalated") == 1
    assert runs(tmp_path) == []
    db.close()


def test_an_ambiguous_id_must_say_action_or_incident(tmp_path: Path) -> None:
    config = setup(tmp_path, "approval: required")
    now = time.time() - 5
    db = db_for(tmp_path)
    fire(db, config, now, alert(alertname="Other"))  # incident 1: no action
    fire(db, config, now, alert(alertname="Other"), alert(alertname="Down", service="api"))
    fire(
        db,
        config,
        now,
        alert(alertname="Other"),
        alert(alertname="Down", service="api"),
        alert(alertname="Down", service="web"),
    )
    db.close()
    assert cli(tmp_path, "recover").code == 0
    # Incident 2 has action 1, incident 3 has action 2: "2" could be either.
    assert [a["id"] for a in action_rows(tmp_path, 2)] == [1]
    assert [a["id"] for a in action_rows(tmp_path, 3)] == [2]
    both = cli(tmp_path, "approve", "2", "--by", "alice")
    assert both.code == 2
    assert "say action:2 or incident:2" in both.stderr
    bad = cli(tmp_path, "approve", "job:2", "--by", "alice")
    assert bad.code == 2
    assert "action:N or incident:N" in bad.stderr
    ok = cli(tmp_path, "approve", "incident:2", "--by", "alice")
    assert ok.code == 0, ok.stderr
    assert ok.stdout == "action 1 approved by alice\n"
    assert [a["status"] for a in action_rows(tmp_path, 3)] == ["awaiting_approval"]


def test_a_bad_approval_value_is_a_config_error(tmp_path: Path) -> None:
    path = recovery_config(tmp_path, "")
    path.write_text(
        "incidents: {resolve_after: 0s}\n"
        + RULES.format(url="http://127.0.0.1:9/hook", approval="approval: maybe")
    )
    result = cli(tmp_path, "recover")
    assert result.code == 78
    assert "rules[0].recovery.approval" in result.stderr
    assert "expected required or none" in result.stderr


def test_dry_run_says_it_would_wait_for_approval_and_changes_nothing(tmp_path: Path) -> None:
    config = setup(tmp_path, "approval: required")
    fire_down(tmp_path, config, T0)
    db = db_for(tmp_path)
    result = recover_due(db, config, T0 + 1, dry_run=True)
    assert [a.outcome for a in result.actions] == ["would-await-approval"]
    assert [a["status"] for a in actions(db)] == ["pending"]
    assert db.conn.execute(
        "SELECT count(*) FROM notifications WHERE event = 'approval'"
    ).fetchone() == (0,)
    db.close()
