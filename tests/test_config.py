"""Loading and validating the rule file, `${VAR}` expansion, secrets files, env overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from incident_cli.config.load import load_config
from incident_cli.errors import ConfigError
from tests.support.builders import write_config

FULL = """
sources:
  prometheus: {type: prometheus, url: "${PROMETHEUS_URL:-http://localhost:9090}"}
  alertmanager:
    type: alertmanager
    url: http://localhost:9093
    timeout: 10s
    basic_auth: {username: ops, password_file: am.pass}
    require_alert: Watchdog
state:
  db: state/incident.db
incidents:
  resolve_after: 5m
  reopen_within: 15m
  flapping: {changes: 4, window: 1h}
  storm: {max_new_per_tick: 20}
  auto_resolve: true
defaults: {severity: warning, notify: [slack]}
rules:
  - name: backend-down
    match: {alertname: BackendServiceDown}
    handler: service_down
    severity: critical
    group_by: [alertname, service]
    notify: [slack, pagerduty, statuspage]
    runbook: https://runbooks.example.com/backend-down
    recovery:
      commands: [[docker-compose, restart, cosmichub-backend]]
      timeout: 60s
      verify: {within: 10m}
      max_attempts: 3
      backoff: 30s
      cooldown: 1h
  - {name: slo, match: {alertname: "~(ServiceAvailabilityBreach|ErrorRateSLOBreach)"}, handler: slo_breach}
  - name: latency
    match: {alertname: "~LatencySLOBreach_.*"}
    handler: performance_issue
    diagnostics: {commands: [[uptime], [df, -h]], queries: ["topk(5, rate(process_cpu_seconds_total[5m]))"]}
  - name: auth-spike
    match: {alertname: AuthenticationFailureSpike}
    handler: security_incident
    security: {ip_label: source_ip, block_command: [fail2ban-client, set, sshd, banip, "{ip}"]}
channels:
  slack: {type: slack, webhook_url: "${SLACK_WEBHOOK_URL}"}
  pagerduty: {type: pagerduty, routing_key: "${PAGERDUTY_API_KEY}", min_severity: critical}
  statuspage: {type: statuspage, page_id: abc123, api_key: "${STATUSPAGE_API_KEY}", components: {backend: cmp1}}
  email: {type: email, host: smtp.example.com, port: 587, starttls: true, username: ops, password_file: smtp.pass, from: incidents@example.com, to: [oncall@example.com]}
  hook: {type: webhook, url: "https://ops.example.com/incident-hook"}
escalation: {channels: [pagerduty]}
anomaly:
  journeys: journeys.jsonl
  window: 12
  fail_threshold: 0.10
  p95_factor: 1.5
  consecutive_failures: 3
recovery: {enabled: true, max_concurrent: 2}
security:
  auto_block: false
  auto_escalate: true
  never_block: [127.0.0.0/8, 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, "::1/128"]
  max_blocks_per_tick: 5
links: {grafana: "${GRAFANA_URL:-}"}
"""

ENV = {
    "SLACK_WEBHOOK_URL": "https://hooks.slack.example/T000/B000/XXXX",
    "PAGERDUTY_API_KEY": "pd-routing-key-123",
    "STATUSPAGE_API_KEY": "sp-key-456",
}


def load_error(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(write_config(tmp_path, text), env or {})
    return info.value


def test_the_spec_example_loads_with_every_section(tmp_path: Path) -> None:
    (tmp_path / "am.pass").write_text("s3cret-am\n")
    (tmp_path / "smtp.pass").write_text("s3cret-smtp")
    config = load_config(write_config(tmp_path, FULL), ENV)
    assert config.sources["prometheus"].url == "http://localhost:9090"
    am = config.sources["alertmanager"]
    assert (am.username, am.password, am.require_alert, am.timeout) == (
        "ops",
        "s3cret-am",
        "Watchdog",
        10.0,
    )
    assert config.db_path == str(tmp_path / "state" / "incident.db")
    assert config.incidents.resolve_after == 300 and config.incidents.flapping_changes == 4
    backend = config.rules[0]
    assert backend.group_by == ("alertname", "service")
    assert backend.recovery is not None
    assert backend.recovery.commands == (("docker-compose", "restart", "cosmichub-backend"),)
    assert backend.recovery.verify is not None and backend.recovery.verify.within == 600
    assert config.rules[2].diagnostics is not None
    assert config.rules[2].diagnostics.commands == (("uptime",), ("df", "-h"))
    assert config.rules[3].security is not None
    assert config.rules[3].security.block_command == (
        "fail2ban-client",
        "set",
        "sshd",
        "banip",
        "{ip}",
    )
    assert config.channels["email"].options.password == "s3cret-smtp"
    assert config.channels["email"].options.to == ("oncall@example.com",)
    assert config.channels["pagerduty"].options.url.startswith("https://events.pagerduty.com/")
    assert config.escalation_channels == ("pagerduty",)
    assert config.anomaly.journeys == str(tmp_path / "journeys.jsonl")
    assert config.grafana_url is None
    assert len(config.security.never_block) == 5
    assert {"s3cret-am", "s3cret-smtp", "pd-routing-key-123"} <= set(config.secrets())


def test_a_channel_whose_secret_expands_empty_is_disabled_not_an_error(tmp_path: Path) -> None:
    config = load_config(
        write_config(
            tmp_path,
            'channels:\n  slack: {type: slack, webhook_url: "${SLACK_WEBHOOK_URL:-}"}\n'
            "defaults: {notify: [slack]}\n",
        ),
        {},
    )
    assert config.channels["slack"].enabled is False
    assert "webhook_url" in (config.channels["slack"].disabled_reason or "")
    assert config.enabled_channels(("slack",)) == []


@pytest.mark.parametrize(
    ("text", "path", "problem"),
    [
        ("sourcs: {}\n", "sourcs", "unknown key"),
        ("sources: [\n", "", "invalid YAML"),
        (
            "rules:\n  - {name: x, match: {alertname: A}, handler: restart_everything}\n",
            "rules[0].handler",
            "unknown handler",
        ),
        ("defaults: {notify: [slack]}\n", "defaults.notify[0]", "unknown channel"),
        (
            "rules:\n  - {name: x, match: {a: b}, notify: [pager]}\n",
            "rules[0].notify[0]",
            "unknown channel",
        ),
        ("incidents: {resolve_after: 5 minutes}\n", "incidents.resolve_after", "not a duration"),
        ("sources:\n  p: {type: graphite, url: 'http://x'}\n", "sources.p.type", "unknown source"),
        (
            "incidents: {storm: {max_new_per_tick: lots}}\n",
            "incidents.storm.max_new_per_tick",
            "whole number",
        ),
        ("recovery: {enabled: maybe}\n", "recovery.enabled", "true or false"),
        ("rules:\n  - {name: x, match: {a: '~('}}\n", "rules[0].match.a", "regular expression"),
        ("channels:\n  c: {type: carrier-pigeon}\n", "channels.c.type", "unknown channel type"),
        ("security: {never_block: [not-an-ip]}\n", "security.never_block[0]", "does not appear"),
        (
            "rules:\n  - {name: x, match: {a: b}}\n  - {name: x, match: {a: c}}\n",
            "rules[1].name",
            "twice",
        ),
        (
            "sources:\n  p: {type: prometheus, url: 'http://x', timeot: 1s}\n",
            "sources.p.timeot",
            "unknown key",
        ),
        ("sources: 5\n", "sources", "expected a mapping"),
        (
            "rules:\n  - {name: x, match: {a: b}, recovery: {commands: [[]]}}\n",
            "rules[0].recovery.commands[0]",
            "program",
        ),
        (
            "rules:\n  - {name: x, match: {a: b}, recovery: {commands: [['{service}', restart]]}}\n",
            "rules[0].recovery.commands[0][0]",
            "placeholder",
        ),
        (
            "rules:\n  - {name: x, match: {a: b}, diagnostics: {commands: [['/opt/{job}/bin']]}}\n",
            "rules[0].diagnostics.commands[0][0]",
            "placeholder",
        ),
        (
            "rules:\n  - {name: x, match: {a: b}, security: {block_command: ['{ip}']}}\n",
            "rules[0].security.block_command[0]",
            "placeholder",
        ),
    ],
)
def test_a_broken_config_names_file_key_and_problem(
    tmp_path: Path, text: str, path: str, problem: str
) -> None:
    error = load_error(tmp_path, text)
    assert str(tmp_path / "incident.yaml") in error.message
    assert path in error.path or path in error.message
    assert problem in error.message
    assert "\n" not in error.message


def test_an_unset_variable_without_default_is_named(tmp_path: Path) -> None:
    error = load_error(
        tmp_path, 'channels:\n  slack: {type: slack, webhook_url: "${SLACK_HOOK}"}\n'
    )
    assert "SLACK_HOOK" in error.message and "channels.slack.webhook_url" in error.message


def test_a_default_is_used_for_an_unset_or_empty_variable(tmp_path: Path) -> None:
    text = 'sources:\n  p: {type: prometheus, url: "${PROM:-http://127.0.0.1:9}"}\n'
    assert load_config(write_config(tmp_path, text), {}).sources["p"].url == "http://127.0.0.1:9"
    assert (
        load_config(write_config(tmp_path, text), {"PROM": ""}).sources["p"].url
        == "http://127.0.0.1:9"
    )
    assert (
        load_config(write_config(tmp_path, text), {"PROM": "http://h:1"}).sources["p"].url
        == "http://h:1"
    )


def test_yaml_booleans_and_octals_stay_text_where_text_is_expected(tmp_path: Path) -> None:
    config = load_config(
        write_config(
            tmp_path, "rules:\n  - {name: norway, match: {country: no, zone: 010, flag: on}}\n"
        ),
        {},
    )
    matchers = {m.label: m.value for m in config.rules[0].match}
    assert matchers == {"country": "no", "zone": "010", "flag": "on"}


def test_a_missing_secret_file_is_a_config_error(tmp_path: Path) -> None:
    error = load_error(
        tmp_path,
        "channels:\n  e: {type: email, host: h, from: a@b, to: [c@d], password_file: nope}\n",
    )
    assert "channels.e.password_file" in error.message and "cannot read" in error.message


def test_environment_overrides_win_over_the_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, "recovery: {enabled: true}\nanomaly: {window: 12}\n")
    config = load_config(
        path,
        {
            "AUTO_RECOVERY_ENABLED": "false",
            "ANOMALY_WINDOW": "30",
            "ANOMALY_FAIL_THRESHOLD": "0.25",
            "ANOMALY_P95_FACTOR": "2",
            "SERVICE_RECOVERY_TIMEOUT_MINUTES": "3",
            "AUTO_BLOCK_SUSPICIOUS_IPS": "true",
            "SECURITY_INCIDENT_AUTO_ESCALATE": "no",
            "INCIDENT_AUTO_RESOLUTION_ENABLED": "0",
            "GRAFANA_URL": "https://grafana.example/d/x",
        },
    )
    assert config.recovery.enabled is False and config.recovery.default_timeout == 180
    assert (config.anomaly.window, config.anomaly.fail_threshold, config.anomaly.p95_factor) == (
        30,
        0.25,
        2.0,
    )
    assert config.security.auto_block is True and config.security.auto_escalate is False
    assert config.incidents.auto_resolve is False
    assert config.grafana_url == "https://grafana.example/d/x"


def test_a_bad_environment_override_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write_config(tmp_path, "{}\n"), {"ANOMALY_WINDOW": "lots"})
    assert "ANOMALY_WINDOW" in info.value.message


def test_without_a_file_the_builtin_defaults_apply(tmp_path: Path) -> None:
    config = load_config(
        tmp_path / "absent.yaml",
        {"PROMETHEUS_URL": "http://127.0.0.1:19090", "SLACK_WEBHOOK_URL": "https://h.example/x"},
        must_exist=False,
    )
    assert config.sources["prometheus"].url == "http://127.0.0.1:19090"
    handlers = {r.name: r.handler for r in config.rules}
    assert handlers == {
        "service-down": "service_down",
        "slo": "slo_breach",
        "latency": "performance_issue",
        "auth-spike": "security_incident",
    }
    assert list(config.channels) == ["slack"] and config.defaults.notify == ("slack",)


def test_an_explicit_path_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "absent.yaml", {}, must_exist=True)
    assert "cannot read" in info.value.message


def test_a_user_handler_is_imported_at_validation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "acme_ops.py").write_text(
        "def payments(incident, alert, rule):\n    return []\nNOT_CALLABLE = 3\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    ok = load_config(
        write_config(
            tmp_path,
            "rules:\n  - {name: p, match: {team: payments}, handler: 'acme_ops:payments'}\n",
        ),
        {},
    )
    assert ok.rules[0].handler == "acme_ops:payments"
    for target in ("acme_ops:missing", "no_such_module_xyz:f", "acme_ops:NOT_CALLABLE"):
        error = load_error(
            tmp_path, f"rules:\n  - {{name: p, match: {{team: x}}, handler: '{target}'}}\n"
        )
        assert "rules[0].handler" in error.message and "cannot be loaded" in error.message


def test_webhook_header_values_count_as_secrets(tmp_path: Path) -> None:
    config = load_config(
        write_config(
            tmp_path,
            "channels:\n  hook: {type: webhook, url: 'https://h.example/x',"
            " headers: {Authorization: 'Bearer very-secret-token'}}\n",
        ),
        {},
    )
    assert "Bearer very-secret-token" in config.secrets()


def test_an_unreadable_ca_file_and_a_non_ascii_token_are_config_errors(tmp_path: Path) -> None:
    error = load_error(
        tmp_path, "sources:\n  p: {type: prometheus, url: 'https://p', ca_file: missing.pem}\n"
    )
    assert "sources.p.ca_file" in error.message
    error = load_error(
        tmp_path, "sources:\n  p: {type: prometheus, url: 'https://p', bearer_token: 'tök€n'}\n"
    )
    assert "sources.p.bearer_token" in error.message and "tök€n" not in error.message


def test_a_bad_merge_key_and_an_alias_bomb_are_config_errors(tmp_path: Path) -> None:
    import time

    error = load_error(tmp_path, "a: &x 1\nb: {<<: *x}\n")
    assert "invalid YAML" in error.message
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join('*' + chr(97 + i) for _ in range(10))}]\n"
        for i in range(8)
    )
    started = time.monotonic()
    error = load_error(tmp_path, bomb)
    assert "alias" in error.message and time.monotonic() - started < 5
