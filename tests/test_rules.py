"""Rule matching, incident keys, severity and titles."""

from __future__ import annotations

from pathlib import Path

from incident_cli.config.load import load_config
from incident_cli.lifecycle.routing import incident_key, match_rule, route


def config(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "incident.yaml"
    path.write_text(text)
    return load_config(path, {})


def test_first_matching_rule_wins_and_regex_is_a_full_match(tmp_path: Path) -> None:
    c = config(
        tmp_path,
        "rules:\n"
        "  - {name: lat, match: {alertname: '~LatencySLOBreach_.*'}, handler: performance_issue}\n"
        "  - {name: any-latency, match: {alertname: '~.*Latency.*'}}\n"
        "  - {name: team, match: {team: payments}}\n",
    )
    assert match_rule(c.rules, {"alertname": "LatencySLOBreach_Api"}).name == "lat"
    assert match_rule(c.rules, {"alertname": "XLatencySLOBreach_Api"}).name == "any-latency"
    assert match_rule(c.rules, {"alertname": "Other", "team": "payments"}).name == "team"
    assert match_rule(c.rules, {"alertname": "Other", "team": "payments-x"}).name == "default"
    assert match_rule(c.rules, {"team": "payments"}).name == "team"


def test_keys_group_by_sorted_labels_and_cannot_collide(tmp_path: Path) -> None:
    c = config(
        tmp_path,
        "rules:\n  - {name: disk, match: {alertname: Disk}, group_by: [service, alertname]}\n",
    )
    rule = c.rules[0]
    assert (
        incident_key(rule, {"alertname": "Disk", "service": "db", "instance": "a"})
        == "disk:alertname=Disk,service=db"
    )
    default = match_rule(c.rules, {"alertname": "Other"})
    tricky = incident_key(default, {"alertname": "Disk", "instance": "db1,mount=/"})
    plain = incident_key(default, {"alertname": "Disk", "instance": "db1", "mount": "/"})
    assert tricky != plain
    assert plain == "default:alertname=Disk,instance=db1,mount=/"


def test_severity_comes_from_rule_then_label_then_default(tmp_path: Path) -> None:
    c = config(
        tmp_path,
        "defaults: {severity: info}\nrules:\n  - {name: crit, match: {alertname: Down}, severity: critical}\n",
    )
    assert route(c, {"alertname": "Down", "severity": "warning"}).severity == "critical"
    assert route(c, {"alertname": "Up", "severity": "warning"}).severity == "warning"
    assert route(c, {"alertname": "Up", "severity": "page-me"}).severity == "info"
    assert route(c, {"alertname": "Up"}).severity == "info"


def test_titles_are_short_and_name_the_service(tmp_path: Path) -> None:
    c = config(tmp_path, "{}\n")
    assert (
        route(c, {"alertname": "BackendServiceDown", "service": "backend"}).title
        == "BackendServiceDown: backend"
    )
    assert len(route(c, {"alertname": "A" * 5000}).title) <= 200
