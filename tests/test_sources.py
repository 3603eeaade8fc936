"""Reading real Prometheus 2.42 and Alertmanager 0.25 payloads, and refusing anything else."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
import responses

from incident_cli.config.model import SourceConfig
from incident_cli.errors import SourceError
from incident_cli.intake.sources import (
    fetch_alerts,
    fingerprint,
    parse_alertmanager,
    parse_prometheus,
)
from tests.support.builders import FIXTURES


def prom_fixture() -> object:
    return json.loads((FIXTURES / "prometheus-2.42" / "prometheus_v1_alerts.json").read_text())


def am_fixture() -> object:
    return json.loads((FIXTURES / "alertmanager-0.25" / "alertmanager_v2_alerts.json").read_text())


def test_prometheus_payload_parses_with_states_and_times() -> None:
    alerts = parse_prometheus("prometheus", prom_fixture())
    states = {a.name: a.state for a in alerts}
    assert states == {
        "BackendServiceDown": "firing",
        "LatencySLOBreach_Calculate": "pending",
        "AuthenticationFailureSpike": "firing",
    }
    backend = next(a for a in alerts if a.name == "BackendServiceDown")
    assert backend.labels["instance"] == "127.0.0.1:19999"
    expected = datetime(2026, 11, 28, 20, 29, 14, 568674, tzinfo=UTC).timestamp()
    assert backend.starts_at is not None and abs(backend.starts_at - expected) < 0.001
    assert backend.fingerprint == fingerprint(dict(reversed(list(backend.labels.items()))))


def test_alertmanager_payload_marks_silenced_alerts_suppressed() -> None:
    alerts = parse_alertmanager("am", am_fixture())
    assert {a.name: a.state for a in alerts} == {
        "BackendServiceDown": "firing",
        "AuthenticationFailureSpike": "suppressed",
    }
    assert alerts[0].fingerprint == "629737382cffbff5"


@pytest.mark.parametrize(
    "body",
    [
        {"status": "error"},
        {"status": "success", "data": {}},
        {"status": "success", "data": {"alerts": [1]}},
        {"status": "success", "data": {"alerts": [{"labels": {"a": 1}, "state": "firing"}]}},
        {"status": "success", "data": {"alerts": [{"labels": {}, "state": "exploded"}]}},
        [],
    ],
)
def test_a_prometheus_body_of_the_wrong_shape_is_refused(body: object) -> None:
    with pytest.raises(SourceError, match="unexpected shape"):
        parse_prometheus("p", body)


def test_an_alertmanager_body_of_the_wrong_shape_is_refused() -> None:
    for body in ({"alerts": []}, [{"labels": {}}], [{"status": {"state": "weird"}}]):
        with pytest.raises(SourceError, match="unexpected shape"):
            parse_alertmanager("am", body)


SOURCE = SourceConfig(name="p", type="prometheus", url="http://prom.test", timeout=2)


@responses.activate
def test_http_errors_and_garbage_are_source_errors() -> None:
    responses.get("http://prom.test/api/v1/alerts", status=500, body="oops")
    with pytest.raises(SourceError, match="HTTP 500"):
        fetch_alerts(SOURCE)
    responses.replace(responses.GET, "http://prom.test/api/v1/alerts", body="<html>garbage")
    with pytest.raises(SourceError, match="not JSON"):
        fetch_alerts(SOURCE)


@responses.activate
def test_a_body_with_a_byte_order_mark_is_read_and_one_not_utf8_is_refused() -> None:
    body = json.dumps(prom_fixture()).encode()
    responses.get("http://prom.test/api/v1/alerts", body=b"\xef\xbb\xbf" + body)
    assert [a.labels for a in fetch_alerts(SOURCE)] == [
        a.labels for a in parse_prometheus("prom", prom_fixture())
    ]
    responses.replace(responses.GET, "http://prom.test/api/v1/alerts", body=b"\xff" + body)
    with pytest.raises(SourceError, match="not JSON"):
        fetch_alerts(SOURCE)


@responses.activate
def test_credentials_are_sent_and_never_in_errors() -> None:
    source = SourceConfig(
        name="am",
        type="alertmanager",
        url="http://am.test",
        username="ops",
        password="hunter2-secret",
    )
    responses.get("http://am.test/api/v2/alerts", json=[])
    assert fetch_alerts(source) == []
    assert responses.calls[0].request.headers["Authorization"].startswith("Basic ")
    bearer = SourceConfig(
        name="b", type="prometheus", url="http://b.test", bearer_token="tok-secret"
    )
    responses.get(
        "http://b.test/api/v1/alerts",
        body=requests.ConnectionError("http://b.test tok-secret refused"),
    )
    with pytest.raises(SourceError) as info:
        fetch_alerts(bearer)
    assert "tok-secret" not in info.value.message


@responses.activate
def test_a_missing_sentinel_alert_means_the_source_is_down() -> None:
    source = SourceConfig(
        name="p", type="prometheus", url="http://prom.test", require_alert="Watchdog"
    )
    responses.get("http://prom.test/api/v1/alerts", json=prom_fixture())
    with pytest.raises(SourceError, match="Watchdog is missing"):
        fetch_alerts(source)
    body = prom_fixture()
    body["data"]["alerts"].append({"labels": {"alertname": "Watchdog"}, "state": "firing"})  # type: ignore[index]
    responses.replace(responses.GET, "http://prom.test/api/v1/alerts", json=body)
    names = [a.name for a in fetch_alerts(source)]
    assert "Watchdog" not in names and "BackendServiceDown" in names


@pytest.fixture
def slow_server() -> Iterator[str]:
    """Answers headers at once, then drips one byte a second: only a total deadline stops it."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            try:
                for _ in range(30):
                    self.wfile.write(b" ")
                    self.wfile.flush()
                    time.sleep(0.5)
            except OSError:
                pass

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_source_that_hangs_is_cut_off_at_its_timeout(slow_server: str) -> None:
    source = SourceConfig(name="slow", type="prometheus", url=slow_server, timeout=1.5)
    started = time.monotonic()
    with pytest.raises(SourceError, match="timed out"):
        fetch_alerts(source)
    assert time.monotonic() - started < 5


@pytest.fixture
def lying_server() -> Iterator[str]:
    """Promises 1000 bytes, sends 10, then hangs up."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b'{"status":')
            self.wfile.flush()
            self.connection.close()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_body_cut_short_is_a_source_error(lying_server: str) -> None:
    with pytest.raises(SourceError, match="connection broke"):
        fetch_alerts(SourceConfig(name="liar", type="prometheus", url=lying_server, timeout=3))


@responses.activate
def test_json_nested_too_deeply_is_a_source_error() -> None:
    responses.get("http://prom.test/api/v1/alerts", body="[" * 200_000)
    with pytest.raises(SourceError):
        fetch_alerts(SOURCE)


@responses.activate
def test_lone_surrogates_in_labels_are_replaced_not_fatal() -> None:
    body = '{"status":"success","data":{"alerts":[{"labels":{"alertname":"A","v":"a\\ud800b"},"state":"firing"}]}}'
    responses.get("http://prom.test/api/v1/alerts", body=body)
    (alert,) = fetch_alerts(SOURCE)
    assert alert.labels["v"] == "a\ufffdb"
    alert.labels["v"].encode("utf-8")  # storable


@responses.activate
def test_basic_auth_is_utf8_encoded() -> None:
    import base64

    source = SourceConfig(
        name="am", type="alertmanager", url="http://am.test", username="ops", password="pässwörd€"
    )
    responses.get("http://am.test/api/v2/alerts", json=[])
    fetch_alerts(source)
    header = responses.calls[0].request.headers["Authorization"]
    assert base64.b64decode(header.split()[1]).decode("utf-8") == "ops:pässwörd€"


@responses.activate
def test_one_source_failing_unexpectedly_does_not_lose_the_others(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from incident_cli.config.load import load_config
    from incident_cli.intake import sources
    from incident_cli.intake.poll import fetch_all

    config_path = tmp_path / "incident.yaml"
    config_path.write_text(
        "sources:\n  good: {type: prometheus, url: 'http://prom.test'}\n"
        "  odd: {type: prometheus, url: 'http://odd.test', bearer_token: 'tok-1234567'}\n"
    )
    config = load_config(config_path, {})
    real = sources.fetch_alerts

    def flaky(source: SourceConfig, session: object = None, **options: Any) -> object:
        if source.name == "odd":
            raise ValueError("surprise with tok-1234567 inside")
        return real(source, **options)

    monkeypatch.setattr(sources, "fetch_alerts", flaky)
    responses.get("http://prom.test/api/v1/alerts", json=prom_fixture())
    fetched, failed = fetch_all(config)
    assert len(fetched["good"]) == 3
    assert failed["odd"].startswith("source odd: ValueError") and "tok-1234567" not in failed["odd"]


def test_odd_alertmanager_fingerprints_and_urls_are_cleaned() -> None:
    body = json.loads(
        '[{"labels":{"alertname":"X"},"status":{"state":"active"},"fingerprint":"ab\\ud800","generatorURL":"http://x/\\udc80"}]'
    )
    (alert,) = parse_alertmanager("am", body)
    assert alert.fingerprint == fingerprint({"alertname": "X"})
    assert alert.generator_url == "http://x/\ufffd"
