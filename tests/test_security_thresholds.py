"""Security thresholds: a rule's `security.min_value` blocks an address only when the alert's
current value reaches it (Prometheus' `value`, or the annotation `value_annotation` names);
below it the incident is escalated as usual and the timeline says why nothing was blocked."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from incident_cli.config.load import load_config
from incident_cli.handlers.planning import plan_blocks_now_over_threshold
from incident_cli.recovery.tick import recover_due
from tests.support.binaries import REPO, http_json, run_cli, stack, wait_until
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

EXAMPLES = REPO / "examples"


def threshold_config(tmp_path: Path, security: str) -> Any:
    script(tmp_path, "ban.sh", 'echo "$@" >> bans.log\n')
    path = recovery_config(
        tmp_path,
        f"""
        defaults: {{notify: []}}
        rules:
          - name: auth-spike
            match: {{alertname: AuthenticationFailureSpike}}
            handler: security_incident
            security: {{ip_label: source_ip, block_command: [./ban.sh, "{{ip}}"], {security}}}
        """,
    )
    return load(
        path, {"AUTO_BLOCK_SUSPICIOUS_IPS": "true", "SECURITY_INCIDENT_AUTO_ESCALATE": "true"}
    )


def spike(ip: str, value: float | None = None, annotations: dict[str, str] | None = None) -> Any:
    return replace(
        alert(alertname="AuthenticationFailureSpike", source_ip=ip),
        value=value,
        annotations=annotations or {},
    )


def bans(tmp_path: Path) -> list[str]:
    log = tmp_path / "bans.log"
    return log.read_text().splitlines() if log.exists() else []


def test_an_alert_at_or_above_min_value_is_blocked(tmp_path: Path) -> None:
    config = threshold_config(tmp_path, "min_value: 10")
    db = db_for(tmp_path)
    fire(db, config, T0, spike("203.0.113.7", value=10.0), spike("203.0.113.8", value=42.5))
    recover_due(db, config, T0 + 1)
    assert sorted(bans(tmp_path)) == ["203.0.113.7", "203.0.113.8"]


def test_below_min_value_it_escalates_and_the_timeline_says_why_nothing_was_blocked(
    tmp_path: Path,
) -> None:
    config = threshold_config(tmp_path, "min_value: 10")
    db = db_for(tmp_path)
    fire(db, config, T0, spike("203.0.113.7", value=9.5))
    result = recover_due(db, config, T0 + 1)

    assert bans(tmp_path) == []
    assert result.escalated == [1]
    block = next(a for a in actions(db) if a["kind"] == "block_ip")
    assert block["status"] == "skipped"
    planned = [e["message"] for e in timeline(db) if e["kind"] == "action_planned"]
    assert any(
        "not blocked: the alert's value 9.5 (value) is below security.min_value 10" in m
        for m in planned
    )


@pytest.mark.parametrize(
    ("annotations", "blocked", "why"),
    [
        ({"value": "12.0"}, True, None),
        ({"value": "3"}, False, "value 3 (annotation 'value') is below"),
        ({"value": "many"}, False, "annotation 'value' is not a number: 'many'"),
        ({}, False, "no annotation 'value'"),
    ],
)
def test_an_alertmanager_alert_takes_its_value_from_the_named_annotation(
    tmp_path: Path, annotations: dict[str, str], blocked: bool, why: str | None
) -> None:
    config = threshold_config(tmp_path, "min_value: 10, value_annotation: value")
    db = db_for(tmp_path)
    fire(db, config, T0, spike("203.0.113.7", annotations=annotations))
    recover_due(db, config, T0 + 1)

    assert bans(tmp_path) == (["203.0.113.7"] if blocked else [])
    if why is not None:
        block = next(a for a in actions(db) if a["kind"] == "block_ip")
        assert why in block["error"]


def test_a_value_that_rises_to_min_value_later_gets_its_block_once(tmp_path: Path) -> None:
    config = threshold_config(tmp_path, "min_value: 10")
    db = db_for(tmp_path)
    fire(db, config, T0, spike("203.0.113.7", value=6.0))
    recover_due(db, config, T0 + 1)
    assert (
        plan_blocks_now_over_threshold(
            db, config, {"prometheus": [spike("203.0.113.7", 9.0)]}, T0 + 60
        )
        == []
    )

    rising = {"prometheus": [spike("203.0.113.7", value=30.0)]}
    fire(db, config, T0 + 120, *rising["prometheus"])
    assert plan_blocks_now_over_threshold(db, config, rising, T0 + 120) == [1]
    assert plan_blocks_now_over_threshold(db, config, rising, T0 + 180) == []
    recover_due(db, config, T0 + 121)

    assert bans(tmp_path) == ["203.0.113.7"]
    assert [a["status"] for a in actions(db) if a["kind"] == "block_ip"] == ["skipped", "succeeded"]
    notes = [e["message"] for e in timeline(db) if e["kind"] == "note"]
    assert "the alert's value 30 (value) now reaches security.min_value 10: blocking" in notes


def test_a_rising_value_plans_nothing_while_blocking_is_off(tmp_path: Path) -> None:
    config = threshold_config(tmp_path, "min_value: 10")
    config = replace(config, security=replace(config.security, auto_block=False))
    db = db_for(tmp_path)
    fire(db, config, T0, spike("203.0.113.7", value=6.0))
    rising = {"prometheus": [spike("203.0.113.7", value=30.0)]}
    assert plan_blocks_now_over_threshold(db, config, rising, T0 + 60) == []
    assert [a["status"] for a in actions(db) if a["kind"] == "block_ip"] == ["skipped"]


def test_without_min_value_any_value_is_blocked_as_before(tmp_path: Path) -> None:
    config = threshold_config(tmp_path, "value_annotation: value")
    db = db_for(tmp_path)
    fire(db, config, T0, spike("203.0.113.7", value=0.1))
    recover_due(db, config, T0 + 1)
    assert bans(tmp_path) == ["203.0.113.7"]


def test_the_example_config_takes_its_thresholds_from_the_environment() -> None:
    path = EXAMPLES / "incident.yaml"
    defaults = load_config(path, {})
    custom = load_config(path, {"FAILED_AUTH_THRESHOLD": "25", "RATE_LIMIT_THRESHOLD": "500"})

    def thresholds(config: Any) -> dict[str, Any]:
        return {
            r.name: (r.security.min_value, r.security.value_annotation)
            for r in config.rules
            if r.security is not None
        }

    assert thresholds(defaults) == {"auth-spike": (10.0, "value"), "rate-limit": (100.0, "value")}
    assert thresholds(custom) == {"auth-spike": (25.0, "value"), "rate-limit": (500.0, "value")}


def test_a_bad_min_value_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "incident.yaml").write_text(
        "rules:\n  - name: a\n    match: {alertname: A}\n    handler: security_incident\n"
        "    security: {min_value: ten}\n"
    )
    result = run_cli(["list"], cwd=tmp_path)
    assert result.code == 78
    assert "rules[0].security.min_value: expected a number, got 'ten'" in result.stderr


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool (Debian: prometheus) missing"
)
def test_the_example_alert_rules_pass_their_promtool_unit_tests() -> None:
    folder = EXAMPLES / "prometheus"
    checked = subprocess.run(
        ["promtool", "check", "rules", "alert_rules.yml"],
        cwd=folder,
        capture_output=True,
        text=True,
    )
    tested = subprocess.run(
        ["promtool", "test", "rules", "alert_rules.test.yml"],
        cwd=folder,
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert tested.returncode == 0, tested.stdout + tested.stderr
    names = (folder / "alert_rules.test.yml").read_text()
    assert "alertname: AuthenticationFailureSpike" in names
    assert "alertname: RateLimitExceeded" in names


# --------------------------------------------------------------------------- real binaries

RULES = """
groups:
- name: security
  interval: 1s
  rules:
  - alert: AuthenticationFailureSpike
    expr: label_replace(toy_value{name=~"auth_.*"}, "source_ip", "$1", "name", "auth_(.*)") > 0
    labels: {severity: critical, category: security}
    annotations:
      value: '{{ $value | printf "%.1f" }}'
"""


def _config(path: Path, source: str) -> None:
    path.write_text(
        f"""
sources:
  {source}
defaults: {{notify: []}}
security: {{auto_block: true, never_block: []}}
rules:
  - name: auth-spike
    match: {{alertname: AuthenticationFailureSpike}}
    handler: security_incident
    security:
      ip_label: source_ip
      block_command: [touch, "blocked-{{ip}}"]
      min_value: 10
      value_annotation: value
"""
    )


def _blocks(db: Path) -> dict[str, tuple[str, str | None]]:
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute(
            "SELECT json_extract(i.labels, '$.source_ip'), a.status, a.error FROM actions a"
            " JOIN incidents i ON i.id = a.incident_id WHERE a.kind = 'block_ip'"
        ).fetchall()
    finally:
        conn.close()
    return {ip: (status, error) for ip, status, error in rows}


@pytest.mark.integration
def test_real_prometheus_and_alertmanager_values_decide_the_block(tmp_path: Path) -> None:
    with stack(tmp_path / "stack", RULES) as (exporter, prom, am):
        assert am is not None
        exporter.set("auth_203.0.113.7", 30)
        exporter.set("auth_198.51.100.2", 6)

        def firing_in_both() -> bool:
            prom_alerts = http_json(prom.url + "/api/v1/alerts")["data"]["alerts"]
            am_alerts = http_json(am.url + "/api/v2/alerts")
            return len(prom_alerts) == 2 and len(am_alerts) == 2

        wait_until(firing_in_both, timeout=60)
        for name, source in (
            ("prom", f"prometheus: {{type: prometheus, url: '{prom.url}'}}"),
            ("am", f"alertmanager: {{type: alertmanager, url: '{am.url}'}}"),
        ):
            workdir = tmp_path / name
            workdir.mkdir()
            _config(workdir / "incident.yaml", source)
            polled = run_cli(["poll"], cwd=workdir)
            assert polled.code == 0, polled.stderr
            recovered = run_cli(["recover"], cwd=workdir)
            assert recovered.code == 0, recovered.stderr

            blocks = _blocks(workdir / "incident.db")
            assert blocks["203.0.113.7"] == ("succeeded", None), name
            status, error = blocks["198.51.100.2"]
            assert status == "skipped" and error is not None, name
            assert "value 6 (" in error and "below security.min_value 10" in error, name
            assert (workdir / "blocked-203.0.113.7").exists()
            assert not (workdir / "blocked-198.51.100.2").exists()

        # The attack grows past the threshold: the next poll plans the block it held back.
        exporter.set("auth_198.51.100.2", 45)
        workdir = tmp_path / "prom"
        wait_until(
            lambda: any(
                a.get("value") not in (None, "6e+00", "6")
                and a["labels"].get("source_ip") == "198.51.100.2"
                for a in http_json(prom.url + "/api/v1/alerts")["data"]["alerts"]
            ),
            timeout=30,
        )
        assert run_cli(["poll"], cwd=workdir).code == 0
        assert run_cli(["recover"], cwd=workdir).code == 0
        assert (workdir / "blocked-198.51.100.2").exists()


def test_config_show_has_the_thresholds_and_the_event_log_with_their_variables(
    tmp_path: Path,
) -> None:
    env = {
        "INCIDENT_CONFIG": str(EXAMPLES / "incident.yaml"),
        "FAILED_AUTH_THRESHOLD": "25",
        "INCIDENT_LOG_FILE": str(tmp_path / "events.jsonl"),
    }
    result = run_cli(["config", "show", "--json"], cwd=tmp_path, env=env)

    assert result.code == 0, result.stderr
    data = result.json()
    security = {r["name"]: r.get("security") for r in data["config"]["rules"]}
    assert security["auth-spike"]["min_value"] == 25.0
    assert security["rate-limit"]["min_value"] == 100.0
    assert security["auth-spike"]["value_annotation"] == "value"
    assert data["config"]["log"] == {"file": str(tmp_path / "events.jsonl"), "format": "json"}
    rule = next(i for i, r in enumerate(data["config"]["rules"]) if r["name"] == "auth-spike")
    assert data["from_environment"][f"rules[{rule}].security.min_value"] == [
        "FAILED_AUTH_THRESHOLD"
    ]
    assert data["from_environment"]["log.file"] == ["INCIDENT_LOG_FILE"]
