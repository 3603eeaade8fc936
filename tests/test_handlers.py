"""Handlers plan actions when an incident opens or reopens; planning never runs anything."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlite_utils import Database

from incident_cli.config.load import load_config
from incident_cli.errors import ConfigError
from incident_cli.handlers import registry
from incident_cli.handlers.planning import gate_reason
from incident_cli.lifecycle.manual import acknowledge
from tests.support import backend
from tests.support.recover import T0, actions, alert, db_for, fire, kinds, load, recovery_config

pytestmark = pytest.mark.usefixtures("both_backends")

SERVICE_RULE = """
rules:
  - name: backend-down
    match: {alertname: BackendServiceDown}
    handler: service_down
    recovery:
      commands: [[touch, ran-1], [touch, ran-2]]
      timeout: 5s
      verify: {http: "http://127.0.0.1:9/health", within: 2m}
      max_attempts: 4
      backoff: 10s
      cooldown: 2h
"""


def params_of(db: Database, action_id: int) -> dict[str, object]:
    row = db.conn.execute("SELECT params FROM actions WHERE id = ?", (action_id,)).fetchone()
    result: dict[str, object] = json.loads(row[0])
    return result


def test_every_builtin_handler_is_registered_by_its_rule_name_and_loads() -> None:
    assert set(registry.BUILTIN) == {
        "default",
        "service_down",
        "slo_breach",
        "performance_issue",
        "security_incident",
    }
    for name in registry.BUILTIN:
        assert callable(registry.load(name)), name
    with pytest.raises(KeyError):
        registry.load("no_such_handler")


def test_the_docs_handler_table_names_exactly_the_registered_built_ins() -> None:
    import re

    text = (Path(__file__).resolve().parent.parent / "docs" / "recovery.md").read_text()
    section = text[text.index("\n## Handlers\n") :].split("\n## ", 2)[1]
    rows = re.findall(r"^\| `([^`]+)` \|", section, re.MULTILINE)
    assert rows == [*registry.BUILTIN, "module:function"]


def test_service_down_plans_one_command_action_and_runs_nothing(tmp_path: Path) -> None:
    config = load(recovery_config(tmp_path, SERVICE_RULE))
    db = db_for(tmp_path)
    result = fire(db, config, T0, alert(alertname="BackendServiceDown", service="backend"))
    assert result.opened == [1]
    [action] = actions(db)
    assert action["kind"] == "command"
    assert action["status"] == "pending"
    assert action["command"] == ["touch", "ran-1"]
    assert action["attempts"] == 0
    params = params_of(db, action["id"])
    assert params["then"] == [["touch", "ran-2"]]
    assert params["verify"] == {"within": 120.0, "http": "http://127.0.0.1:9/health"}
    assert (params["max_attempts"], params["backoff"], params["cooldown"]) == (4, 10.0, 7200.0)
    assert params["timeout"] == 5.0
    budget = db.conn.execute("SELECT budget_key FROM actions").fetchone()[0]
    assert budget.startswith("backend-down|backend-down:")
    # Planning is not running.
    assert not (tmp_path / "ran-1").exists()
    assert "action_planned" in kinds(db)


def test_service_down_without_recovery_commands_plans_nothing(tmp_path: Path) -> None:
    config = load(
        recovery_config(
            tmp_path, "rules: [{name: down, match: {alertname: X}, handler: service_down}]\n"
        )
    )
    db = db_for(tmp_path)
    fire(db, config, T0, alert(alertname="X"))
    assert actions(db) == []


def test_commands_are_recorded_skipped_when_recovery_is_disabled(tmp_path: Path) -> None:
    config = load(recovery_config(tmp_path, SERVICE_RULE), {"AUTO_RECOVERY_ENABLED": "false"})
    db = db_for(tmp_path)
    fire(db, config, T0, alert(alertname="BackendServiceDown", service="backend"))
    [action] = actions(db)
    assert action["status"] == "skipped"
    assert "AUTO_RECOVERY_ENABLED" in action["error"]
    planned = [e for e in db.query("SELECT * FROM timeline WHERE kind = 'action_planned'")]
    assert "skipped" in planned[0]["message"]


def test_slo_breach_collects_the_rules_diagnostics_or_the_default_snapshot(tmp_path: Path) -> None:
    config = load(
        recovery_config(
            tmp_path,
            """
            rules:
              - {name: plain, match: {alertname: ErrorRateSLOBreach}, handler: slo_breach}
              - name: diag
                match: {alertname: ServiceAvailabilityBreach}
                handler: slo_breach
                diagnostics: {commands: [[uptime]], queries: ["up"]}
            """,
        )
    )
    db = db_for(tmp_path)
    fire(
        db,
        config,
        T0,
        alert(alertname="ErrorRateSLOBreach"),
        alert(alertname="ServiceAvailabilityBreach"),
    )
    [default] = actions(db, 1)  # docs/recovery.md: slo_breach = notify, collect diagnostics
    assert default["kind"] == "diagnostics"
    assert "process_cpu_seconds_total" in json.dumps(params_of(db, default["id"]))
    [diag] = actions(db, 2)
    assert diag["kind"] == "diagnostics"
    params = params_of(db, diag["id"])
    assert params["commands"] == [["uptime"]]
    assert params["queries"] == ["up"]


def test_performance_issue_snapshots_default_queries_without_rule_diagnostics(
    tmp_path: Path,
) -> None:
    config = load(
        recovery_config(
            tmp_path, "rules: [{name: lat, match: {alertname: Slow}, handler: performance_issue}]\n"
        )
    )
    db = db_for(tmp_path)
    fire(db, config, T0, alert(alertname="Slow"))
    [diag] = actions(db)
    assert diag["kind"] == "diagnostics"
    queries = params_of(db, diag["id"])["queries"]
    assert isinstance(queries, list) and queries
    assert all("process_" in q for q in queries)


SECURITY_RULE = """
rules:
  - name: auth-spike
    match: {alertname: AuthenticationFailureSpike}
    handler: security_incident
    security: {ip_label: source_ip, block_command: [fail2ban-client, set, sshd, banip, "{ip}"]}
"""


def test_security_incident_escalates_and_blocking_stays_off_by_default(tmp_path: Path) -> None:
    config = load(recovery_config(tmp_path, SECURITY_RULE))
    db = db_for(tmp_path)
    fire(db, config, T0, alert(alertname="AuthenticationFailureSpike", source_ip="203.0.113.9"))
    by_kind = {a["kind"]: a for a in actions(db)}
    assert by_kind["escalate"]["status"] == "pending"
    assert by_kind["block_ip"]["status"] == "skipped"
    assert "AUTO_BLOCK_SUSPICIOUS_IPS" in by_kind["block_ip"]["error"]


def test_security_switches_come_from_the_environment(tmp_path: Path) -> None:
    config = load(
        recovery_config(tmp_path, SECURITY_RULE),
        {"AUTO_BLOCK_SUSPICIOUS_IPS": "true", "SECURITY_INCIDENT_AUTO_ESCALATE": "false"},
    )
    db = db_for(tmp_path)
    fire(db, config, T0, alert(alertname="AuthenticationFailureSpike", source_ip="203.0.113.9"))
    by_kind = {a["kind"]: a for a in actions(db)}
    assert by_kind["block_ip"]["status"] == "pending"
    assert by_kind["escalate"]["status"] == "skipped"
    assert "SECURITY_INCIDENT_AUTO_ESCALATE" in by_kind["escalate"]["error"]


def test_security_incident_without_block_command_only_escalates(tmp_path: Path) -> None:
    config = load(
        recovery_config(
            tmp_path,
            "rules: [{name: s, match: {alertname: A}, handler: security_incident}]\n",
        ),
        {"AUTO_BLOCK_SUSPICIOUS_IPS": "true"},
    )
    db = db_for(tmp_path)
    fire(db, config, T0, alert(alertname="A", source_ip="203.0.113.9"))
    assert [a["kind"] for a in actions(db)] == ["escalate"]


def test_gate_reason_names_the_switch_that_is_off(tmp_path: Path) -> None:
    config = load(recovery_config(tmp_path, ""), {"AUTO_RECOVERY_ENABLED": "0"})
    assert gate_reason(config, "command", {}) is not None
    assert gate_reason(config, "diagnostics", {}) is None
    assert gate_reason(config, "escalate", {"gate": "security.auto_escalate"}) is None
    assert gate_reason(config, "escalate", {"gate": "nonsense"}) == "unknown gate 'nonsense'"


def test_a_reopen_plans_the_actions_again(tmp_path: Path) -> None:
    config = load(recovery_config(tmp_path, SERVICE_RULE))
    db = db_for(tmp_path)
    a = alert(alertname="BackendServiceDown", service="backend")
    fire(db, config, T0, a)
    fire(db, config, T0 + 10)  # absent twice with resolve_after 0s → resolved
    fire(db, config, T0 + 20)
    assert db.conn.execute("SELECT status FROM incidents").fetchone()[0] == "resolved"
    assert actions(db)[0]["status"] == "skipped"  # a resolved incident's pending action
    result = fire(db, config, T0 + 30, a)
    assert result.reopened == [1]
    statuses = [x["status"] for x in actions(db)]
    assert statuses == ["skipped", "pending"]


def test_acknowledging_cancels_a_pending_escalation(tmp_path: Path) -> None:
    config = load(recovery_config(tmp_path, SECURITY_RULE))
    db = db_for(tmp_path)
    fire(db, config, T0, alert(alertname="AuthenticationFailureSpike", source_ip="203.0.113.9"))
    acknowledge(db, config, 1, "alice", None, T0 + 5)
    escalation = next(a for a in actions(db) if a["kind"] == "escalate")
    assert escalation["status"] == "skipped"


# --------------------------------------------------------------------------- user handlers


def write_user_module(tmp_path: Path, body: str) -> None:
    (tmp_path / "acme_handlers.py").write_text(body)
    sys.path.insert(0, str(tmp_path))


@pytest.fixture
def user_module(tmp_path: Path) -> Iterator[None]:
    yield
    sys.path.remove(str(tmp_path))
    sys.modules.pop("acme_handlers", None)


def test_a_user_handler_plans_its_actions(tmp_path: Path, user_module: None) -> None:
    write_user_module(
        tmp_path,
        "from incident_cli.models import ActionPlan\n"
        "def payments(incident, alert, rule):\n"
        "    return [ActionPlan(kind='command', command=('echo', '{team}'), target='pay')]\n",
    )
    config = load(
        recovery_config(
            tmp_path,
            "rules: [{name: pay, match: {team: payments}, handler: 'acme_handlers:payments'}]\n",
        )
    )
    db = db_for(tmp_path)
    fire(db, config, T0, alert(alertname="X", team="payments"))
    [action] = actions(db)
    assert action["command"] == ["echo", "{team}"]
    assert db.conn.execute("SELECT budget_key FROM actions").fetchone()[0] == "pay|pay"


def test_a_user_handler_that_raises_or_returns_junk_leaves_a_note(
    tmp_path: Path, user_module: None
) -> None:
    write_user_module(
        tmp_path,
        "from incident_cli.models import ActionPlan\n"
        "def broken(incident, alert, rule):\n"
        "    raise RuntimeError('boom')\n"
        "def junk(incident, alert, rule):\n"
        "    return ['rm -rf /', ActionPlan(kind='teleport'), ActionPlan(kind='command')]\n",
    )
    config = load(
        recovery_config(
            tmp_path,
            """
            rules:
              - {name: b, match: {alertname: B}, handler: 'acme_handlers:broken'}
              - {name: j, match: {alertname: J}, handler: 'acme_handlers:junk'}
            """,
        )
    )
    db = db_for(tmp_path)
    result = fire(db, config, T0, alert(alertname="B"), alert(alertname="J"))
    assert sorted(result.opened) == [1, 2]
    notes = [r["message"] for r in db.query("SELECT message FROM timeline WHERE kind = 'note'")]
    assert any("RuntimeError: boom" in n for n in notes)
    assert any("non-action" in n for n in notes)
    assert any("unknown kind 'teleport'" in n for n in notes)
    assert any("without a command" in n for n in notes)
    assert actions(db, 1) == [] and actions(db, 2) == []


def test_a_handler_that_cannot_be_imported_is_a_config_error(tmp_path: Path) -> None:
    path = recovery_config(
        tmp_path, "rules: [{name: x, match: {alertname: X}, handler: 'no_such_mod:fn'}]\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    assert info.value.exit_status == 78
    assert "rules[0].handler" in info.value.message


def test_a_handler_returning_one_plan_or_failing_half_way_never_loses_the_poll(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from incident_cli.config.load import load_config
    from incident_cli.intake.sources import fingerprint
    from incident_cli.lifecycle.poll import apply_poll
    from incident_cli.models import Alert
    from incident_cli.store.connection import open_db

    (tmp_path / "odd_handlers.py").write_text(
        "from incident_cli.models import ActionPlan\n"
        "def single(incident, alert, rule):\n"
        "    return ActionPlan(kind='escalate', params={'reason': 'one'})\n"
        "def broken(incident, alert, rule):\n"
        "    yield ActionPlan(kind='escalate', params={'reason': 'two'})\n"
        "    raise RuntimeError('half way')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "incident.yaml"
    path.write_text(
        "sources:\n  p: {type: prometheus, url: 'http://127.0.0.1:9'}\n"
        "rules:\n"
        "  - {name: one, match: {alertname: One}, handler: 'odd_handlers:single'}\n"
        "  - {name: two, match: {alertname: Two}, handler: 'odd_handlers:broken'}\n"
    )
    config = load_config(path, {})
    db = open_db(backend.locate(tmp_path / "state.db"))
    alerts = [
        Alert("p", fingerprint({"alertname": n}), {"alertname": n}, {}, "firing")
        for n in ("One", "Two", "Three")
    ]
    result = apply_poll(db, config, {"p": alerts}, {}, 1_800_000_000.0)
    assert len(result.opened) == 3
    kinds = {
        r["rule"]: r["n"]
        for r in db.query(
            "SELECT i.rule, count(a.id) AS n FROM incidents i LEFT JOIN actions a ON a.incident_id = i.id GROUP BY i.rule"
        )
    }
    assert kinds == {"one": 1, "two": 0, "default": 0}
    notes = [r["message"] for r in db.query("SELECT message FROM timeline WHERE kind = 'note'")]
    assert any("half way" in n for n in notes)
