"""A replicated source is one source: `urls:` lists its replicas, all are read and merged, and
one replica down is named but is not a source failure."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from incident_cli.config.load import load_config
from incident_cli.errors import ConfigError
from incident_cli.intake.sources import merge_replicas
from incident_cli.models import Alert
from tests.support.binaries import CliResult, Process, run_cli, serve_get, start_alertmanager
from tests.support.builders import alert, write_config

# --------------------------------------------------------------------------- merging


def seen(fp: str, state: str, starts_at: float | None, summary: str = "") -> Alert:
    """Alert `fp` as one replica reports it."""
    return alert(
        "A", source="s", fingerprint=fp, n=fp, state=state, starts_at=starts_at, summary=summary
    )


def test_an_alert_active_on_any_replica_is_active_from_its_earliest_start() -> None:
    # Alertmanager: suppressed (silenced) on one replica, active on the other.
    merged = merge_replicas(
        [[seen("a", "suppressed", 100.0, "one")], [seen("a", "firing", 200.0, "two")]]
    )
    assert [(a.state, a.starts_at, a.annotations["summary"]) for a in merged] == [
        ("firing", 100.0, "two")
    ]
    # Prometheus: firing on one of an HA pair, still pending on the other.
    merged = merge_replicas([[seen("p", "firing", 300.0)], [seen("p", "pending", 250.0)]])
    assert [(a.state, a.starts_at) for a in merged] == [("firing", 250.0)]
    # A start only one replica knows is kept.
    merged = merge_replicas([[seen("q", "firing", None)], [seen("q", "firing", 5.0)]])
    assert merged[0].starts_at == 5.0


def test_alerts_of_different_replicas_are_all_kept_once_each_in_first_seen_order() -> None:
    merged = merge_replicas(
        [
            [seen("a", "firing", 1.0), seen("b", "firing", 1.0)],
            [seen("c", "firing", 1.0), seen("a", "firing", 1.0)],
            [],
        ]
    )
    assert [a.fingerprint for a in merged] == ["a", "b", "c"]


# --------------------------------------------------------------------------- config


def am_config(tmp_path: Path, source: str) -> Path:
    return write_config(tmp_path, f"sources:\n  am: {source}\n")


def test_urls_load_as_the_replicas_of_one_source(tmp_path: Path) -> None:
    config = load_config(
        am_config(tmp_path, "{type: alertmanager, urls: ['http://a:9093/', 'https://b:9093']}")
    )
    source = config.sources["am"]
    assert source.replicas == ("http://a:9093", "https://b:9093")
    assert source.url == "http://a:9093"
    single = load_config(am_config(tmp_path, "{type: alertmanager, url: 'http://a:9093'}"))
    assert single.sources["am"].replicas == ("http://a:9093",)


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("{type: alertmanager, url: 'http://a', urls: ['http://b']}", "either url or urls"),
        ("{type: alertmanager}", "either url or urls"),
        ("{type: alertmanager, urls: []}", "non-empty list"),
        ("{type: alertmanager, urls: 'http://a'}", "urls"),
        ("{type: alertmanager, urls: ['http://a', 'ftp://u:hunter22@b']}", "urls[1]"),
        ("{type: alertmanager, urls: ['http://a', 'http://a/']}", "listed twice"),
    ],
)
def test_bad_urls_are_config_errors(tmp_path: Path, source: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(am_config(tmp_path, source))
    assert problem in str(caught.value)
    assert "hunter22" not in str(caught.value)


def test_a_bad_urls_list_exits_78_on_one_line(tmp_path: Path) -> None:
    path = am_config(tmp_path, "{type: alertmanager, urls: ['http://u:hunter22@a', 'nope']}")
    result = run_cli(["-c", str(path), "run"], cwd=tmp_path)
    assert result.code == 78
    assert "sources.am.urls[1]" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "hunter22" not in result.stderr


def test_config_show_prints_every_replica_masked(tmp_path: Path) -> None:
    path = am_config(
        tmp_path, "{type: alertmanager, urls: ['http://u:hunter22@a:9093', 'http://b:9093']}"
    )
    shown = run_cli(["-c", str(path), "config", "show", "--json"], cwd=tmp_path)
    assert shown.code == 0, shown.stderr
    assert "hunter22" not in shown.stdout
    text = run_cli(["-c", str(path), "config", "show"], cwd=tmp_path)
    assert "hunter22" not in text.stdout and "http://b:9093" in text.stdout
    assert "http://***@a:9093" in text.stdout


# --------------------------------------------------------------------------- real replicas


def post_alerts(am: Process, names: list[str]) -> None:
    """Alerts as Prometheus sends them to every Alertmanager of a cluster (or, to set the
    replicas apart, to one)."""
    now = time.time()
    body = [
        {
            "labels": {"alertname": "ReplicaTest", "name": name, "severity": "critical"},
            "annotations": {"summary": f"{name} is down"},
            "startsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 60)),
            "endsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 3600)),
        }
        for name in names
    ]
    request = urllib.request.Request(
        am.url + "/api/v2/alerts",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200


def shown(am: Process, names: list[str]) -> bool:
    with urllib.request.urlopen(am.url + "/api/v2/alerts", timeout=5) as response:
        seen = {a["labels"].get("name") for a in json.loads(response.read())}
    return set(names) <= seen


def open_names(tmp_path: Path, config: Path) -> dict[str, str]:
    listed = run_cli(["-c", str(config), "list", "--status", "all", "--json"], cwd=tmp_path)
    assert listed.code == 0, listed.stderr
    return {i["labels"].get("name", ""): i["status"] for i in listed.json()}


def tick(tmp_path: Path, config: Path) -> CliResult:
    result = run_cli(["-c", str(config), "run"], cwd=tmp_path)
    assert "Traceback" not in result.stderr
    assert "hunter22" not in result.stdout + result.stderr
    return result


def status_sources(tmp_path: Path, config: Path) -> dict[str, Any]:
    result = run_cli(["-c", str(config), "status", "--json"], cwd=tmp_path)
    assert "hunter22" not in result.stdout + result.stderr
    return {s["name"]: s for s in result.json()["sources"]}


@pytest.mark.integration
def test_two_real_alertmanager_replicas_are_one_source(tmp_path: Path) -> None:
    from tests.support.binaries import wait_until

    one = start_alertmanager(tmp_path / "am1")
    two = start_alertmanager(tmp_path / "am2")
    try:
        # "both" on the two replicas, "first" only on the first, "second" only on the second.
        post_alerts(one, ["both", "first"])
        post_alerts(two, ["both", "second"])
        wait_until(lambda: shown(one, ["both", "first"]) and shown(two, ["both", "second"]))
        first_url = one.url.replace("http://", "http://watcher:hunter22@")
        config = tmp_path / "incident.yaml"
        config.write_text(
            "sources:\n"
            f"  am: {{type: alertmanager, urls: ['{first_url}', '{two.url}'], timeout: 3s}}\n"
            "incidents: {resolve_after: 1s}\n"
            "rules:\n"
            "  - {name: replicas, match: {alertname: ReplicaTest}, group_by: [name]}\n"
        )
        first = tick(tmp_path, config)
        assert first.code == 0, first.stderr
        assert open_names(tmp_path, config) == {"both": "open", "first": "open", "second": "open"}

        # One replica down: the source is up, nothing resolves (not even the alert only the
        # dead replica had), the replica is named once, the tick exits 0.
        one.kill()
        masked = one.url.replace("http://", "http://***@")
        for n in range(3):
            time.sleep(1.1)  # past resolve_after: a resolve would happen now if we let it
            result = tick(tmp_path, config)
            assert result.code == 0, result.stderr
            named = f"source am: replica {masked} failed" in result.stderr
            assert named == (n == 0), result.stderr
        assert open_names(tmp_path, config) == {"both": "open", "first": "open", "second": "open"}
        sources = status_sources(tmp_path, config)
        assert sources["am"]["reachable"] is True
        assert {r["url"]: r["reachable"] for r in sources["am"]["replicas"]} == {
            masked: False,
            two.url: True,
        }
        human = run_cli(["-c", str(config), "status"], cwd=tmp_path)
        assert f"replica {masked}" in human.stdout and "hunter22" not in human.stdout

        # It comes back: said once; its alerts are read again.
        one.start()
        post_alerts(one, ["both", "first"])
        wait_until(lambda: shown(one, ["both", "first"]))
        back = tick(tmp_path, config)
        assert back.code == 0 and f"replica {masked} answers again" in back.stderr

        # Both down: the source failed, exactly as a single source does.
        one.kill()
        two.kill()
        for n in range(3):
            time.sleep(1.1)
            down = tick(tmp_path, config)
            assert down.code == 75
            assert ("source am: every replica failed" in down.stderr) == (n == 0), down.stderr
        names = open_names(tmp_path, config)
        assert {k: v for k, v in names.items() if k} == {
            "both": "open",
            "first": "open",
            "second": "open",
        }
        assert names.get("") == "open"  # the third failed tick: source-unreachable incident
    finally:
        one.stop()
        two.stop()


# --------------------------------------------------------------------------- Prometheus HA pair


def prometheus_body(alerts: list[Mapping[str, Any]]) -> bytes:
    return json.dumps({"status": "success", "data": {"alerts": alerts}}).encode()


def prom_alert(name: str, state: str, active_at: str) -> dict[str, Any]:
    return {
        "labels": {"alertname": "HaTest", "name": name},
        "annotations": {},
        "state": state,
        "activeAt": active_at,
        "value": "1e+00",
    }


def test_a_prometheus_pair_is_merged_and_one_failing_is_not_a_source_failure(
    tmp_path: Path,
) -> None:
    answers: dict[str, tuple[int, bytes]] = {
        "a": (
            200,
            prometheus_body([prom_alert("x", "firing", "2026-01-01T00:00:10Z")]),
        ),
        "b": (
            200,
            prometheus_body(
                [
                    prom_alert("x", "pending", "2026-01-01T00:00:05Z"),
                    prom_alert("y", "firing", "2026-01-01T00:00:00Z"),
                ]
            ),
        ),
    }
    with (
        serve_get(lambda _headers: answers["a"]) as a,
        serve_get(lambda _headers: answers["b"]) as b,
    ):
        config = tmp_path / "incident.yaml"
        config.write_text(
            "sources:\n"
            f"  prom: {{type: prometheus, urls: ['{a}', '{b}'], timeout: 3s, max_alerts: 2}}\n"
            "incidents: {resolve_after: 1s}\n"
            "rules:\n"
            "  - {name: ha, match: {alertname: HaTest}, group_by: [name]}\n"
        )
        assert tick(tmp_path, config).code == 0
        listed = run_cli(["-c", str(config), "list", "--json"], cwd=tmp_path).json()
        started = {i["labels"]["name"]: i["started_at"] for i in listed}
        # x fires on a and is pending on b: firing, from b's earlier activeAt; y only on b.
        assert started == {"x": "2026-01-01T00:00:05Z", "y": "2026-01-01T00:00:00Z"}

        # b answers garbage, then more than max_alerts: each time b fails, the source does
        # not, and y (only on b) stays open.
        answers["b"] = (200, b"<html>")
        time.sleep(1.1)
        garbage = tick(tmp_path, config)
        assert garbage.code == 0 and f"replica {b} failed" in garbage.stderr
        assert "not JSON" in garbage.stderr
        answers["b"] = (
            200,
            prometheus_body([prom_alert(n, "firing", "2026-01-01T00:00:00Z") for n in "xyz"]),
        )
        time.sleep(1.1)
        assert tick(tmp_path, config).code == 0
        replicas = status_sources(tmp_path, config)["prom"]["replicas"]
        errors = {r["url"]: r["last_error"] for r in replicas}
        assert errors[a] is None and errors[b].startswith("more than 2 alerts")
        assert open_names(tmp_path, config) == {"x": "open", "y": "open"}

        # Both fail: exit 75 and the line names each replica.
        answers["a"] = (503, b"{}")
        both = tick(tmp_path, config)
        assert both.code == 75
        assert f"{a}: HTTP 503" in both.stderr and f"{b}: more than 2 alerts" in both.stderr
        assert open_names(tmp_path, config) == {"x": "open", "y": "open"}


def test_incident_test_checks_each_replica(tmp_path: Path) -> None:
    body = prometheus_body([prom_alert("x", "firing", "2026-01-01T00:00:00Z")])
    with serve_get(lambda _headers: (200, body)) as up:
        config = tmp_path / "incident.yaml"
        config.write_text(
            "sources:\n"
            f"  prom: {{type: prometheus, urls: ['{up}', 'http://u:hunter22@127.0.0.1:9'],"
            " timeout: 2s}\n"
        )
        result = run_cli(["-c", str(config), "test", "--json"], cwd=tmp_path)
    assert "hunter22" not in result.stdout + result.stderr
    checks = [c for c in result.json()["checks"] if c["check"] == "source"]
    assert [(c["status"], c["detail"]) for c in checks] == [
        ("ok", f"prom (prometheus) at {up} answers: 1 alerts, 1 firing"),
        ("failed", "prom (prometheus) at http://***@127.0.0.1:9: connection refused"),
    ]


def test_replicas_read_side_by_side_count_once_against_the_max_runtime(tmp_path: Path) -> None:
    from incident_cli.intake.poll import read_sources
    from incident_cli.runtime import TickRuntime

    body = prometheus_body([prom_alert("x", "firing", "2026-01-01T00:00:00Z")])

    def slow(_headers: Mapping[str, str]) -> tuple[int, bytes]:
        time.sleep(0.4)
        return 200, body

    with serve_get(slow) as a, serve_get(slow) as b:
        config = load_config(am_config(tmp_path, f"{{type: prometheus, urls: ['{a}', '{b}']}}"))
        runtime = TickRuntime(30.0)
        started = time.monotonic()
        intake = read_sources(config, runtime)
        took = time.monotonic() - started
    assert [alert.labels["name"] for alert in intake.fetched["am"]] == ["x"]
    assert intake.replicas["am"] == {a: None, b: None}
    # Read in parallel, and accounted as the slowest replica, not the sum of both.
    assert took < 0.75
    assert 0.4 <= runtime.spent["source am"] <= took
