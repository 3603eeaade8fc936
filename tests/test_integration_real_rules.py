"""A published third-party rule file (awesome-prometheus-alerts' node-exporter rules, vendored
under tests/fixtures/) loaded into the real Prometheus, the exporter given the states that fire
several of its alerts, and the incidents checked against Prometheus's own `/api/v1/alerts` —
every command run as cron runs it."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.binaries import (
    CliResult,
    Process,
    ToyExporter,
    http_json,
    run_cli,
    start_prometheus,
    wait_until,
)

pytestmark = pytest.mark.integration

RULES_FILE = Path(__file__).parent / "fixtures" / "awesome-prometheus-alerts" / "node-exporter.yml"
UNAME = (
    'node_uname_info{domainname="(none)",machine="x86_64",nodename="toyhost",'
    'release="6.1.0-13-amd64",sysname="Linux",version="#1 SMP Debian"}'
)
HARDWARE = re.compile(r"HostRaid.*|HostNodeOvertemperatureAlarm|HostEdac.*")
SEVERITY_ORDER = ("info", "warning", "error", "critical")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ToyExporter, Process]]:
    """A stand-in node_exporter scraped as job `node` by a Prometheus running the vendored
    rules, unchanged."""
    exporter = ToyExporter()
    prom = None
    try:
        prom = start_prometheus(
            tmp_path_factory.mktemp("node"), RULES_FILE.read_text(), [exporter.address], job="node"
        )
        yield exporter, prom
    finally:
        if prom is not None:
            prom.stop()
        exporter.close()


def expose(exporter: ToyExporter, *series: str) -> None:
    """Exactly these series (value 1) besides node_uname_info, which every rule joins on."""
    exporter.series = {UNAME: 1, **{s: 1 for s in series}}


def firing(prom: Process) -> list[dict[str, Any]]:
    alerts: list[dict[str, Any]] = http_json(prom.url + "/api/v1/alerts")["data"]["alerts"]
    return [a for a in alerts if a["state"] == "firing"]


def wait_for_firing(prom: Process, expected: dict[str, int]) -> list[dict[str, Any]]:
    """Wait until Prometheus fires exactly `expected` (alertname → count); return its alerts."""

    def counts() -> tuple[list[dict[str, Any]]] | None:
        alerts = firing(prom)
        names: dict[str, int] = {}
        for a in alerts:
            names[a["labels"]["alertname"]] = names.get(a["labels"]["alertname"], 0) + 1
        return (alerts,) if names == expected else None  # truthy even when none fire

    (alerts,) = wait_until(counts, timeout=30)
    result: list[dict[str, Any]] = alerts
    return result


def expected_key(labels: dict[str, str]) -> str:
    """The incident key the config below gives a Prometheus alert."""
    if HARDWARE.fullmatch(labels["alertname"]):
        return f"host-hardware:instance={labels['instance']}"
    return "default:" + ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def check_against_prometheus(alerts: list[dict[str, Any]], cli: Any) -> dict[str, dict[str, Any]]:
    """Open incidents and their alerts are what Prometheus fires: one incident per key, each
    with exactly its alerts, the highest of their severities, the labels the group shares and
    a title of its own. Returns `show --json` by key."""
    by_key: dict[str, list[dict[str, Any]]] = {}
    for a in alerts:
        by_key.setdefault(expected_key(a["labels"]), []).append(a)
    listed = cli("list", "--json").json()
    assert sorted(i["key"] for i in listed) == sorted(by_key)
    assert len({i["title"] for i in listed}) == len(listed), [i["title"] for i in listed]
    shown = {}
    for incident in listed:
        detail = cli("show", str(incident["id"]), "--json").json()
        group = by_key[incident["key"]]
        mine = [a for a in detail["alerts"] if a["state"] == "firing"]
        assert sorted(map(_sorted_items, (a["labels"] for a in mine))) == sorted(
            map(_sorted_items, (a["labels"] for a in group))
        )
        assert [a["severity"] for a in mine] == [a["labels"]["severity"] for a in mine]
        assert detail["severity"] == max(
            (a["labels"]["severity"] for a in group), key=SEVERITY_ORDER.index
        )
        if incident["rule"] == "host-hardware":
            assert detail["labels"] == {"instance": group[0]["labels"]["instance"]}
            assert detail["title"] == f"host-hardware: {group[0]['labels']['instance']}"
        else:
            assert detail["labels"] == group[0]["labels"]
            assert detail["title"].startswith(f"{group[0]['labels']['alertname']}: ")
        shown[incident["key"]] = detail
    return shown


def _sorted_items(labels: dict[str, str]) -> list[tuple[str, str]]:
    return sorted(labels.items())


def config_for(tmp_path: Path, prom: Process, body: str) -> Any:
    config = tmp_path / "incident.yaml"
    config.write_text(
        f"sources:\n  prometheus: {{type: prometheus, url: '{prom.url}', timeout: 5s}}\n"
        "incidents: {resolve_after: 1s, reopen_within: 10m}\n" + body
    )
    state = str(tmp_path / "state.db")

    def cli(*args: str) -> CliResult:
        result = run_cli(["-c", str(config), "--db", state, *args], cwd=tmp_path)
        assert "Traceback" not in result.stderr, result.stderr
        return result

    return cli


def test_node_exporter_rules_group_rank_and_title_incidents_as_prometheus_fires_them(
    node: tuple[ToyExporter, Process], tmp_path: Path
) -> None:
    exporter, prom = node
    cli = config_for(
        tmp_path,
        prom,
        """
channels:
  hook: {type: webhook, url: "http://127.0.0.1:9/hook"}
  pager: {type: pagerduty, routing_key: rk-test, url: "http://127.0.0.1:9/pd", min_severity: critical}
defaults: {notify: [hook, pager]}
rules:
  - name: host-hardware
    match: {alertname: "~HostRaid.*|HostNodeOvertemperatureAlarm|HostEdac.*"}
    group_by: [instance]
""",
    )
    units = ["cron.service", "nginx.service", "ssh.service"]
    systemd = [f'node_systemd_unit_state{{name="{u}",state="failed",type="simple"}}' for u in units]
    # A warning first: three crashed units, and uncorrectable memory errors.
    expose(exporter, *systemd, 'node_edac_uncorrectable_errors_total{controller="0"}')
    alerts = wait_for_firing(
        prom, {"HostSystemdServiceCrashed": 3, "HostEdacUncorrectableErrorsDetected": 1}
    )
    polled = cli("poll")
    assert polled.code == 0, polled.stderr
    shown = check_against_prometheus(alerts, cli)
    # The field case: every unit's incident read "HostSystemdServiceCrashed: <instance>".
    titles = sorted(d["title"] for d in shown.values() if d["rule"] == "default")
    assert [re.search(r"name=([\w.]+)", t).group(1) for t in titles] == units  # type: ignore[union-attr]
    [hardware] = [d for d in shown.values() if d["rule"] == "host-hardware"]
    assert hardware["severity"] == "warning"
    edac = next(a for a in alerts if a["labels"]["alertname"].startswith("HostEdac"))
    assert hardware["annotations"] == edac["annotations"]  # from the alert that opened it
    assert [(n["channel"], n["event"]) for n in hardware["notifications"]] == [("hook", "firing")]

    # Then the same host turns critical: an inactive RAID array and an overtemperature alarm.
    expose(
        exporter,
        *systemd,
        'node_edac_uncorrectable_errors_total{controller="0"}',
        'node_md_state{device="md0",state="inactive"}',
        'node_hwmon_temp_crit_alarm_celsius{chip="platform_coretemp_0",sensor="temp1"}',
    )
    alerts = wait_for_firing(
        prom,
        {
            "HostSystemdServiceCrashed": 3,
            "HostEdacUncorrectableErrorsDetected": 1,
            "HostRaidArrayGotInactive": 1,
            "HostNodeOvertemperatureAlarm": 1,
        },
    )
    polled = cli("poll")
    assert polled.code == 0, polled.stderr
    shown = check_against_prometheus(alerts, cli)
    [hardware] = [d for d in shown.values() if d["rule"] == "host-hardware"]
    assert hardware["severity"] == "critical"
    assert len(hardware["alerts"]) == 3
    assert hardware["annotations"] == edac["annotations"]
    [raised] = [e for e in hardware["timeline"] if e["kind"] == "severity_raised"]
    assert (raised["data"]["from"], raised["data"]["to"]) == ("warning", "critical")
    # The pager hears now (that is the page); the hook, told already, gets nothing new.
    assert [(n["channel"], n["event"]) for n in hardware["notifications"]] == [
        ("hook", "firing"),
        ("pager", "firing"),
    ]

    # Every view names and counts incidents alike.
    report = cli("report", "1", "--format", "json")
    assert report.code == 0, report.stderr
    assert sorted((a["alertname"], a["incidents"]) for a in report.json()["top_alerts"]) == [
        ("HostSystemdServiceCrashed", 3),
        ("host-hardware", 1),
    ]
    listed = cli("list", "--json").json()
    assert sorted(i["title"].split(":")[0] for i in listed) == [
        "HostSystemdServiceCrashed",
        "HostSystemdServiceCrashed",
        "HostSystemdServiceCrashed",
        "host-hardware",
    ]


def test_a_spent_budget_escalates_once_however_often_the_alert_reopens(
    node: tuple[ToyExporter, Process], tmp_path: Path
) -> None:
    exporter, prom = node
    restart = tmp_path / "restart.sh"
    restart.write_text('#!/bin/sh\necho "restart $1" >> runs.log\necho "unit failed" >&2\nexit 1\n')
    restart.chmod(0o755)
    cli = config_for(
        tmp_path,
        prom,
        """
channels:
  hook: {type: webhook, url: "http://127.0.0.1:9/hook"}
defaults: {notify: []}
escalation: {channels: [hook]}
rules:
  - name: unit-crashed
    match: {alertname: HostSystemdServiceCrashed}
    handler: service_down
    group_by: [alertname, instance, name]
    recovery:
      commands: [["./restart.sh", "{name}"]]
      timeout: 10s
      max_attempts: 1
      cooldown: 1h
""",
    )
    crashed = 'node_systemd_unit_state{name="flaky.service",state="failed",type="simple"}'

    def crash() -> None:
        expose(exporter, crashed)
        wait_for_firing(prom, {"HostSystemdServiceCrashed": 1})
        assert cli("poll").code == 0
        cli("recover")

    crash()
    [incident] = cli("list", "--json").json()
    for reopen in (1, 2):
        expose(exporter)  # the unit comes back
        wait_for_firing(prom, {})
        assert cli("poll").code == 0
        time.sleep(1.1)  # resolve_after: 1s, over two polls
        assert cli("poll").code == 0
        assert cli("list", "--status", "resolved", "--json").json()[0]["id"] == incident["id"]
        crash()  # and fails again: the same incident reopens
        assert cli("show", str(incident["id"]), "--json").json()["reopen_count"] == reopen

    detail = cli("show", str(incident["id"]), "--json").json()
    assert (tmp_path / "runs.log").read_text() == "restart flaky.service\n"
    # Before: one `escalated` per reopen (three here), each paging again.
    assert [e["kind"] for e in detail["timeline"]].count("escalated") == 1
    assert [n["event"] for n in detail["notifications"]].count("escalation") == 1
    skipped = [a for a in detail["actions"] if a["status"] == "skipped"]
    assert len(skipped) == 2 and all("already escalated" in a["error"] for a in skipped)
