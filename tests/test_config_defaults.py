"""Defaults live once (incident_cli/config/defaults.py): a section's record built with no
arguments is the section an empty rule file loads."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from incident_cli.config.load import load_config
from incident_cli.config.model import (
    AnomalyConfig,
    DefaultsConfig,
    DiagnosticsRule,
    IncidentsConfig,
    RecoveryConfig,
    RecoveryRule,
    SecurityConfig,
    SourceConfig,
)


def test_each_section_record_defaults_to_what_an_empty_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "incident.yaml"
    path.write_text("{}\n")
    config = load_config(path, {})
    assert config.incidents == IncidentsConfig()
    assert config.defaults == DefaultsConfig()
    assert config.anomaly == AnomalyConfig()
    assert config.recovery == RecoveryConfig()
    assert config.security == SecurityConfig()


def test_a_source_and_a_rules_recovery_and_diagnostics_default_alike(tmp_path: Path) -> None:
    path = tmp_path / "incident.yaml"
    path.write_text(
        """
sources:
  p: {type: prometheus, url: "http://p.test"}
rules:
  - {name: r, match: {alertname: A}, recovery: {commands: [["true"]]}, diagnostics: {}}
"""
    )
    config = load_config(path, {})
    assert config.sources["p"] == SourceConfig(name="p", type="prometheus", url="http://p.test")
    [rule] = config.rules
    assert rule.recovery == RecoveryRule(commands=(("true",),))
    assert rule.diagnostics == DiagnosticsRule()


def test_never_block_defaults_to_the_loopback_and_private_ranges() -> None:
    assert {str(n) for n in SecurityConfig().never_block} == {
        "127.0.0.0/8",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "::1/128",
    }
    assert ipaddress.ip_address("10.1.2.3") in SecurityConfig().never_block[1]
