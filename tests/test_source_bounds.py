"""A hostile or broken source is bounded: at most `max_alerts` alerts are read (parsing stops at
the first one past the cap), and label values are clipped to the stored limit when they are
read, so rules never match against a megabyte."""

from __future__ import annotations

import json
import sqlite3
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import responses

from incident_cli.config.defaults import MAX_ALERTS
from incident_cli.config.load import load_config
from incident_cli.config.model import Matcher, SourceConfig
from incident_cli.errors import ConfigError, SourceError
from incident_cli.intake import sources
from incident_cli.intake.poll import poll_once
from incident_cli.intake.sources import fetch_alerts, load_json
from incident_cli.models import CLIPPED, MAX_STORED_VALUE
from incident_cli.store.connection import open_db
from tests.support.binaries import run_cli, serve_get


def prometheus_body(count: int, **extra_labels: str) -> dict[str, Any]:
    alerts = [
        {
            "labels": {"alertname": "Storm", "instance": f"host-{i}", **extra_labels},
            "annotations": {},
            "state": "firing",
            "activeAt": "2026-11-28T20:29:14Z",
        }
        for i in range(count)
    ]
    return {"status": "success", "data": {"alerts": alerts}}


def alertmanager_body(count: int) -> list[dict[str, Any]]:
    return [
        {"labels": {"alertname": "Storm", "i": str(i)}, "status": {"state": "active"}}
        for i in range(count)
    ]


# ------------------------------------------------------------------------------ max_alerts


def test_max_alerts_defaults_to_50000_and_must_be_a_positive_whole_number(tmp_path: Path) -> None:
    path = tmp_path / "incident.yaml"
    path.write_text("sources:\n  p: {type: prometheus, url: 'http://p.test'}\n")
    assert load_config(path, {}).sources["p"].max_alerts == MAX_ALERTS == 50000
    path.write_text("sources:\n  p: {type: prometheus, url: 'http://p.test', max_alerts: 10}\n")
    assert load_config(path, {}).sources["p"].max_alerts == 10
    path.write_text("sources:\n  p: {type: prometheus, url: 'http://p.test', max_alerts: 0}\n")
    with pytest.raises(ConfigError, match=r"sources\.p\.max_alerts: must be at least 1"):
        load_config(path, {})


@responses.activate
def test_a_source_with_more_alerts_than_max_alerts_is_a_failed_source() -> None:
    source = SourceConfig(name="big", type="prometheus", url="http://big.test", max_alerts=5)
    responses.get("http://big.test/api/v1/alerts", json=prometheus_body(6))
    with pytest.raises(SourceError) as info:
        fetch_alerts(source)
    assert info.value.message == "source big: more than 5 alerts (its max_alerts); none were read"
    responses.replace(responses.GET, "http://big.test/api/v1/alerts", json=prometheus_body(5))
    assert len(fetch_alerts(source)) == 5


@responses.activate
def test_an_alertmanager_over_the_cap_is_refused_too() -> None:
    source = SourceConfig(name="am", type="alertmanager", url="http://am.test", max_alerts=3)
    responses.get("http://am.test/api/v2/alerts", json=alertmanager_body(4))
    with pytest.raises(SourceError, match="more than 3 alerts"):
        fetch_alerts(source)
    responses.replace(responses.GET, "http://am.test/api/v2/alerts", json=alertmanager_body(3))
    assert len(fetch_alerts(source)) == 3


def test_parsing_stops_at_the_first_alert_past_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    # A small answer is parsed in one go, and counted.
    with pytest.raises(SourceError, match="more than 5 alerts"):
        load_json(json.dumps([{}] * 6), "source am", cap=5)
    assert load_json(json.dumps([{}] * 5), "source am", cap=5) == [{}] * 5
    # A big one item by item: what follows the cap is never parsed (the answer is "too many",
    # not "not JSON").
    monkeypatch.setattr(sources, "WHOLE_PARSE_BYTES", 0)
    text = json.dumps(prometheus_body(3))
    cut = text.rindex("]}}")
    broken = text[:cut] + ", {}, this is not JSON"
    with pytest.raises(SourceError, match="more than 3 alerts"):
        load_json(broken, "source p", list_at=("data", "alerts"), cap=3)
    with pytest.raises(SourceError, match="not JSON"):
        load_json(broken, "source p", list_at=("data", "alerts"), cap=10)
    # Keys in any order, whitespace anywhere, and the same answer as json.loads.
    odd = ' { "data" : { "alerts" : [ {"a": 1} , {"b": [2]} ] , "x": null } , "status":"success" } '
    assert load_json(odd, "p", list_at=("data", "alerts"), cap=2) == json.loads(odd)


def test_memory_stays_in_proportion_to_the_cap_not_to_the_body() -> None:
    body = json.dumps(prometheus_body(100_000))
    tracemalloc.start()
    try:
        with pytest.raises(SourceError, match="more than 1000 alerts"):
            load_json(body, "source p", list_at=("data", "alerts"), cap=1000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # 1,000 parsed alerts: a small part of the body's size. Parsing all 100,000 would take
    # several times the body.
    assert peak < len(body) / 4, f"peak {peak >> 20} MiB for a {len(body) >> 20} MiB body"


def test_over_the_cap_poll_changes_nothing_exits_75_and_the_source_is_unreachable_after_3_ticks(
    tmp_path: Path,
) -> None:
    body = json.dumps(prometheus_body(51)).encode()
    with serve_get(lambda headers: (200, body)) as url:
        (tmp_path / "incident.yaml").write_text(
            f"sources:\n  big: {{type: prometheus, url: '{url}', max_alerts: 50}}\n"
        )
        ticks = [
            run_cli(["--config", "incident.yaml", "--db", "state.db", "poll"], cwd=tmp_path)
            for _ in range(3)
        ]
    assert [t.code for t in ticks] == [75, 75, 75]
    [line] = ticks[0].stderr.splitlines()
    assert line.startswith(
        "incident: source big: more than 50 alerts (its max_alerts); none were read"
        " (nothing changed for source big"
    )
    conn = sqlite3.connect(tmp_path / "state.db")
    try:
        keys = [r[0] for r in conn.execute("SELECT key FROM incidents")]
        alerts = conn.execute("SELECT count(*) FROM alerts WHERE source = 'big'").fetchone()[0]
    finally:
        conn.close()
    assert keys == ["source_unreachable:source=big"]
    assert alerts == 0


# ------------------------------------------------------------------------------ clipping


@responses.activate
def test_a_huge_label_value_is_clipped_when_it_is_read() -> None:
    body = prometheus_body(1, blob="prod-db-" + "x" * (1 << 20))
    body["data"]["alerts"][0]["annotations"] = {"description": "y" * (1 << 20)}
    responses.get("http://p.test/api/v1/alerts", json=body)
    (alert,) = fetch_alerts(SourceConfig(name="p", type="prometheus", url="http://p.test"))
    assert len(alert.labels["blob"]) == MAX_STORED_VALUE + len(CLIPPED)
    assert alert.labels["blob"].startswith("prod-db-xxx") and alert.labels["blob"].endswith(CLIPPED)
    assert alert.annotations["description"].endswith(CLIPPED)


@responses.activate
def test_rules_match_the_clipped_value_never_the_megabyte(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "incident.yaml"
    path.write_text(
        "sources:\n  p: {type: prometheus, url: 'http://p.test'}\n"
        "rules:\n"
        "  - {name: other, match: {blob: '~.*prod.*db.*nothere'}}\n"
        "  - {name: prod-db, match: {blob: '~.*prod.*db.*'}}\n"
    )
    config = load_config(path, {})
    responses.get(
        "http://p.test/api/v1/alerts", json=prometheus_body(1, blob="prod-db-" + "x" * (1 << 20))
    )
    seen: list[int] = []
    real = Matcher.matches

    def spy(self: Matcher, labels: Any) -> bool:
        seen.append(len(labels.get(self.label, "")))
        return real(self, labels)

    monkeypatch.setattr(Matcher, "matches", spy)
    db = open_db(tmp_path / "state.db")
    try:
        result = poll_once(db, config, 1_800_000_000.0)
        (rule,) = [r[0] for r in db.conn.execute("SELECT rule FROM incidents")]
    finally:
        db.close()
    assert len(result.opened) == 1 and rule == "prod-db"
    assert seen and max(seen) == MAX_STORED_VALUE + len(CLIPPED)
