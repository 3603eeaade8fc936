"""Where the configuration in effect came from: the shipped env file leaves behaviour to the
rule file, `config show` marks every value taken from the environment, `test` lists overrides."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from incident_cli.config.env import ENV_OVERRIDES, ENV_VARIABLES
from incident_cli.config.load import load_config
from tests.support.binaries import REPO, run_cli

# The field case: the rule file turns recovery off and widens the anomaly window.
RULE_FILE = """\
sources:
  prometheus: {type: prometheus, url: "${PROMETHEUS_URL:-http://localhost:9090}"}
  am:
    type: alertmanager
    url: http://127.0.0.1:9093
    basic_auth: {username: ops, password: "am-pass-0123456789"}
channels:
  slack: {type: slack, webhook_url: "${SLACK_WEBHOOK_URL}"}
recovery: {enabled: false}
anomaly: {window: 30}
"""
SLACK = "https://hooks.slack.example/services/T000/B000/secret-0123456789"


def env_file_assignments() -> dict[str, str]:
    """The variables the shipped env file sets (as systemd's EnvironmentFile= reads it)."""
    values = {}
    for line in (REPO / "cron" / "incident.env.example").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name] = value
    return values


def test_the_shipped_env_file_does_not_override_the_rule_file(tmp_path: Path) -> None:
    path = tmp_path / "incident.yaml"
    path.write_text(RULE_FILE)
    env = {**env_file_assignments(), "SLACK_WEBHOOK_URL": SLACK}
    assert not set(env) & set(ENV_VARIABLES)
    config = load_config(path, env)
    assert config.recovery.enabled is False
    assert config.anomaly.window == 30
    assert config.env_overrides == ()


def test_the_env_file_names_each_behaviour_variable_commented_out_with_its_key() -> None:
    lines = (REPO / "cron" / "incident.env.example").read_text().splitlines()
    text = "\n".join(lines)
    assert "WINS OVER THE CONFIG FILE" in text
    for override in ENV_OVERRIDES:
        at = next(i for i, line in enumerate(lines) if line.startswith(f"#{override.variable}="))
        assert override.key in lines[at - 1], override.variable


def test_config_show_marks_each_value_from_the_environment_and_masks_secrets(
    tmp_path: Path,
) -> None:
    path = tmp_path / "incident.yaml"
    path.write_text(RULE_FILE)
    env = {
        "INCIDENT_CONFIG": str(path),
        "PROMETHEUS_URL": "http://prom.example:9090",
        "SLACK_WEBHOOK_URL": SLACK,
        "AUTO_RECOVERY_ENABLED": "true",
        "ANOMALY_WINDOW": "12",
    }
    result = run_cli(["config", "show"], cwd=tmp_path, env=env)
    assert result.code == 0, result.stderr
    out = result.stdout
    assert "enabled: true  # from AUTO_RECOVERY_ENABLED" in out
    assert "window: 12  # from ANOMALY_WINDOW" in out
    assert "url: http://prom.example:9090  # from PROMETHEUS_URL" in out
    assert 'webhook_url: "***"  # from SLACK_WEBHOOK_URL' in out
    assert "AUTO_RECOVERY_ENABLED=true overrides recovery.enabled (instead of false)" in out
    assert f"Effective configuration: {path} (from INCIDENT_CONFIG)" in out
    assert "secret-0123456789" not in out and "am-pass-0123456789" not in out
    assert "# from" not in "\n".join(line for line in out.splitlines() if "max_concurrent" in line)

    # The text is the same configuration as the JSON, in the file's own YAML.
    as_json = run_cli(["config", "show", "--json"], cwd=tmp_path, env=env)
    assert as_json.code == 0, as_json.stderr
    data = as_json.json()
    assert yaml.safe_load(out) == data["config"]
    assert data["config"]["recovery"]["enabled"] is True
    assert data["config"]["sources"]["am"]["basic_auth"]["password"] == "***"
    assert data["from_environment"] == {
        "sources.prometheus.url": ["PROMETHEUS_URL"],
        "channels.slack.webhook_url": ["SLACK_WEBHOOK_URL"],
        "recovery.enabled": ["AUTO_RECOVERY_ENABLED"],
        "anomaly.window": ["ANOMALY_WINDOW"],
    }
    assert {(o["variable"], o["key"], o["value"], o["file_value"]) for o in data["overrides"]} == {
        ("AUTO_RECOVERY_ENABLED", "recovery.enabled", "true", False),
        ("ANOMALY_WINDOW", "anomaly.window", "12", 30),
    }
    assert data["file_from"] == "INCIDENT_CONFIG"
    assert "secret-0123456789" not in as_json.stdout and "am-pass-0123456789" not in as_json.stdout


def test_config_show_names_a_db_path_from_the_environment(tmp_path: Path) -> None:
    (tmp_path / "incident.yaml").write_text("{}\n")
    db = tmp_path / "state" / "x.db"
    result = run_cli(["config", "show", "--json"], cwd=tmp_path, env={"INCIDENT_DB": str(db)})
    assert result.code == 0, result.stderr
    data = result.json()
    assert data["config"]["state"]["db"] == str(db)
    assert data["from_environment"] == {"state.db": ["INCIDENT_DB"]}
    assert not db.exists()  # showing the configuration creates nothing


def test_config_show_of_the_builtin_defaults_says_so(tmp_path: Path) -> None:
    result = run_cli(
        ["config", "show"], cwd=tmp_path, env={"SERVICE_RECOVERY_TIMEOUT_MINUTES": "3"}
    )
    assert result.code == 0, result.stderr
    assert "the built-in defaults (there is no ./incident.yaml)" in result.stdout
    assert "timeout: 3m  # from SERVICE_RECOVERY_TIMEOUT_MINUTES" in result.stdout
    assert "(instead of 10m)" in result.stdout
    assert not (tmp_path / "incident.db").exists()


def test_incident_test_lists_the_overrides_in_effect(tmp_path: Path) -> None:
    path = tmp_path / "incident.yaml"
    path.write_text("recovery: {enabled: false}\nanomaly: {window: 30}\n")
    result = run_cli(
        ["-c", str(path), "test", "--offline"],
        cwd=tmp_path,
        env={"AUTO_RECOVERY_ENABLED": "true", "ANOMALY_WINDOW": "12"},
    )
    assert result.code == 0, result.stdout + result.stderr
    assert (
        "✓ environment: AUTO_RECOVERY_ENABLED=true overrides recovery.enabled (instead of false)"
        in result.stdout.splitlines()
    )
    assert (
        "✓ environment: ANOMALY_WINDOW=12 overrides anomaly.window (instead of 30)"
        in result.stdout.splitlines()
    )
    quiet = run_cli(["-c", str(path), "test", "--offline", "--json"], cwd=tmp_path)
    checks = [c for c in json.loads(quiet.stdout)["checks"] if c["check"] == "environment"]
    assert checks == [
        {
            "check": "environment",
            "status": "ok",
            "detail": "no environment variable overrides the config",
        }
    ]


# URLs that carry credentials, from the file and from the environment.
LINKED_RULES = """\
sources:
  prom: {type: prometheus, url: http://127.0.0.1:9}
rules:
  - name: web
    match: {alertname: WebDown}
    runbook: "https://wiki:file-runbook-pw@wiki.example/web"
    recovery:
      commands: [[systemctl, restart, web]]
      verify: {within: 30s, http: "${VERIFY_URL}"}
links: {grafana: "https://viewer:file-grafana-pw@grafana.example"}
channels:
  status: {type: statuspage, page_id: p1, api_key: sp-key-0123456789}
"""
PASSWORDS = ("file-runbook-pw", "env-verify-pw", "file-grafana-pw", "env-grafana-pw")


def test_config_show_and_test_mask_credentials_in_every_url(tmp_path: Path) -> None:
    path = tmp_path / "incident.yaml"
    path.write_text(LINKED_RULES)
    env = {
        "INCIDENT_CONFIG": str(path),
        "VERIFY_URL": "http://check:env-verify-pw@127.0.0.1:8080/health",
        "GRAFANA_URL": "https://admin:env-grafana-pw@grafana.example",
    }
    results = {
        "show": run_cli(["config", "show"], cwd=tmp_path, env=env),
        "show --json": run_cli(["config", "show", "--json"], cwd=tmp_path, env=env),
        "test": run_cli(["test", "--offline"], cwd=tmp_path, env=env),
        "test --json": run_cli(["test", "--offline", "--json"], cwd=tmp_path, env=env),
    }
    for name, result in results.items():
        assert result.code in (0, 1), (name, result.stderr)
        for password in PASSWORDS:
            assert password not in result.stdout + result.stderr, (name, password)
    shown = results["show"].stdout
    assert "grafana: https://***@grafana.example  # from GRAFANA_URL" in shown
    assert "(instead of https://***@grafana.example)" in shown
    assert "runbook: https://***@wiki.example/web" in shown
    assert "http: http://***@127.0.0.1:8080/health  # from VERIFY_URL" in shown
    assert "links.grafana (instead of https://***@grafana.example)" in results["test"].stdout


def test_config_show_prints_max_alerts_and_the_statuspage_name_template(tmp_path: Path) -> None:
    path = tmp_path / "incident.yaml"
    path.write_text(
        LINKED_RULES.replace(
            "  prom: {type: prometheus, url: http://127.0.0.1:9}\n",
            "  prom: {type: prometheus, url: http://127.0.0.1:9}\n"
            "  capped: {type: alertmanager, url: http://127.0.0.1:9, max_alerts: 7}\n",
        )
        + "  named: {type: statuspage, page_id: p2, api_key: k2, name_template: '{rule} down'}\n"
    )
    env = {"VERIFY_URL": "http://127.0.0.1:8080/health"}
    data = run_cli(["-c", str(path), "config", "show", "--json"], cwd=tmp_path, env=env).json()
    config = data["config"]
    assert config["sources"]["prom"]["max_alerts"] == 50000
    assert config["sources"]["capped"]["max_alerts"] == 7
    assert config["channels"]["status"]["name_template"] == "{name}"
    assert config["channels"]["named"]["name_template"] == "{rule} down"
    shown = run_cli(["-c", str(path), "config", "show"], cwd=tmp_path, env=env).stdout
    assert yaml.safe_load(shown) == config
