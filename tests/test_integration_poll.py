"""`incident poll` against real Prometheus and Alertmanager binaries, run as cron runs it."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.binaries import (
    AMTOOL,
    CliResult,
    Process,
    ToyExporter,
    alertmanager_states,
    prometheus_alert_states,
    run_cli,
    stack,
    wait_until,
)
from tests.support.builders import write_config

pytestmark = pytest.mark.integration

RULES = """
groups:
- name: it
  interval: 1s
  rules:
  - alert: ToyHigh
    expr: toy_value > 0
    labels: {severity: critical}
    annotations: {summary: "toy {{ $labels.name }} is {{ $value }}"}
  - alert: ToySlow
    expr: toy_value{name="pending"} > 0
    for: 1h
    labels: {severity: warning}
"""


@pytest.fixture(scope="module")
def binaries(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ToyExporter, Process, Process]]:
    workdir = tmp_path_factory.mktemp("stack")
    with stack(workdir, RULES) as (exporter, prom, am):
        assert am is not None
        yield exporter, prom, am


def binaries_config(path: Path, prom: Process, am: Process | None, *, name_filter: str) -> Path:
    """A config that polls the real binaries; rules only see this test's `name` label."""
    sources = f"  prometheus: {{type: prometheus, url: '{prom.url}', timeout: 5s}}\n"
    if am is not None:
        sources = f"  alertmanager: {{type: alertmanager, url: '{am.url}', timeout: 5s}}\n"
    return write_config(
        path.parent,
        "sources:\n"
        + sources
        + "incidents: {resolve_after: 1s, reopen_within: 10m}\n"
        + "rules:\n"
        + f"  - {{name: toy, match: {{alertname: ToyHigh, name: {name_filter}}}}}\n"
        + "  - {name: slow, match: {alertname: ToySlow}, handler: default}\n",
        path.name,
    )


def incidents(cwd: Path, config: Path, status: str = "all") -> list[dict[str, Any]]:
    result = run_cli(["-c", str(config), "list", "--status", status, "--json"], cwd=cwd)
    assert result.code == 0, result.stderr
    mine: list[dict[str, Any]] = result.json()
    return mine


def poll(cwd: Path, config: Path) -> CliResult:
    return run_cli(["-c", str(config), "poll"], cwd=cwd)


def firing_in_prometheus(prom: Process, name: str) -> bool:
    return prometheus_alert_states(prom).get(f"ToyHigh/{name}") == "firing"


def test_open_on_firing_not_pending_then_idempotent_resolve_and_reopen(
    binaries: tuple[ToyExporter, Process, Process], tmp_path: Path
) -> None:
    exporter, prom, _ = binaries
    config = binaries_config(tmp_path / "incident.yaml", prom, None, name_filter="a")
    exporter.set("a", 1)
    exporter.set("pending", 1)
    wait_until(lambda: firing_in_prometheus(prom, "a"))
    assert prometheus_alert_states(prom)["ToySlow/pending"] == "pending"

    first = poll(tmp_path, config)
    assert first.code == 0, first.stderr
    assert first.stdout == "" and first.stderr == ""  # cron mails any output
    opened = [i for i in incidents(tmp_path, config) if i["labels"].get("name") == "a"]
    assert len(opened) == 1
    incident = opened[0]
    assert incident["rule"] == "toy"
    assert incident["status"] == "open"
    assert incident["severity"] == "critical"
    assert incident["source"] == "prometheus"
    assert incident["started_at"] is not None and incident["started_at"].endswith("Z")
    # A pending alert never opens an incident.
    assert not [i for i in incidents(tmp_path, config) if i["labels"].get("alertname") == "ToySlow"]

    # A second poll changes nothing: same incidents, same timeline.
    before = run_cli(["-c", str(config), "show", str(incident["id"]), "--json"], cwd=tmp_path)
    second = poll(tmp_path, config)
    assert second.code == 0
    after = run_cli(["-c", str(config), "show", str(incident["id"]), "--json"], cwd=tmp_path)
    assert after.json()["timeline"] == before.json()["timeline"]
    assert len(incidents(tmp_path, config)) == len(incidents(tmp_path, config))

    # Clear: resolves only after two successful polls without it (resolve_after is 1s).
    exporter.set("a", 0)
    wait_until(lambda: not firing_in_prometheus(prom, "a"))
    assert poll(tmp_path, config).code == 0
    still_open = [i["id"] for i in incidents(tmp_path, config, "open")]
    assert incident["id"] in still_open  # one poll is not enough
    time.sleep(1.1)
    assert poll(tmp_path, config).code == 0
    resolved = [i for i in incidents(tmp_path, config, "resolved") if i["id"] == incident["id"]]
    assert resolved and resolved[0]["resolution"] == "auto"

    # It fires again within reopen_within: the same incident reopens (a flap).
    exporter.set("a", 1)
    wait_until(lambda: firing_in_prometheus(prom, "a"))
    assert poll(tmp_path, config).code == 0
    again = [i for i in incidents(tmp_path, config) if i["labels"].get("name") == "a"]
    assert [i["id"] for i in again] == [incident["id"]]
    assert again[0]["status"] == "open" and again[0]["reopen_count"] == 1
    kinds = [
        e["kind"]
        for e in run_cli(
            ["-c", str(config), "show", str(incident["id"]), "--json"], cwd=tmp_path
        ).json()["timeline"]
    ]
    assert kinds.count("opened") == 1 and "resolved" in kinds and "reopened" in kinds
    exporter.set("a", 0)


def test_prometheus_down_exits_75_and_changes_nothing(tmp_path: Path) -> None:
    exporter = ToyExporter()
    from tests.support.binaries import start_prometheus

    prom = start_prometheus(tmp_path / "prom", RULES, [exporter.address])
    try:
        config = binaries_config(tmp_path / "incident.yaml", prom, None, name_filter="b")
        exporter.set("b", 1)
        wait_until(lambda: firing_in_prometheus(prom, "b"))
        assert poll(tmp_path, config).code == 0
        before = incidents(tmp_path, config)
        assert len(before) == 1
        prom.kill()
        time.sleep(1.1)  # past resolve_after: a mass resolve would happen now if we let it
        for tick in range(2):
            result = poll(tmp_path, config)
            assert result.code == 75
            # Said on the first failure only: cron mails every line.
            assert ("prometheus" in result.stderr) == (tick == 0)
            assert "Traceback" not in result.stderr
            assert incidents(tmp_path, config) == before
        # The third failed tick opens an incident about the source itself.
        assert poll(tmp_path, config).code == 75
        after = incidents(tmp_path, config)
        unreachable = [
            i for i in after if i["labels"].get("alertname") == "IncidentSourceUnreachable"
        ]
        assert len(unreachable) == 1 and unreachable[0]["labels"]["source"] == "prometheus"
        assert [i for i in after if i["id"] == before[0]["id"]] == before
    finally:
        prom.stop()
        exporter.close()


def test_silenced_alertmanager_alert_keeps_its_incident_open(
    binaries: tuple[ToyExporter, Process, Process], tmp_path: Path
) -> None:
    exporter, prom, am = binaries
    config = binaries_config(tmp_path / "incident.yaml", prom, am, name_filter="c")
    exporter.set("c", 1)
    wait_until(lambda: alertmanager_states(am).get("ToyHigh/c") == "active")
    assert poll(tmp_path, config).code == 0
    opened = [i for i in incidents(tmp_path, config) if i["labels"].get("name") == "c"]
    assert len(opened) == 1 and opened[0]["source"] == "alertmanager"

    subprocess.run(
        [
            AMTOOL,
            "silence",
            "add",
            "alertname=ToyHigh",
            "name=c",
            "--comment=working on it",
            "--author=test",
            "--duration=1h",
            f"--alertmanager.url={am.url}",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    wait_until(lambda: alertmanager_states(am).get("ToyHigh/c") == "suppressed")
    for _ in range(3):
        assert poll(tmp_path, config).code == 0
        time.sleep(0.6)
    still = [i for i in incidents(tmp_path, config) if i["id"] == opened[0]["id"]]
    assert still[0]["status"] == "open"
    detail = run_cli(["-c", str(config), "show", str(opened[0]["id"]), "--json"], cwd=tmp_path)
    assert [a["state"] for a in detail.json()["alerts"]] == ["suppressed"]
    exporter.set("c", 0)
