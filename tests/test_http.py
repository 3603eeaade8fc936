"""The one HTTP client (incident_cli/http.py) as its callers use it: credentials sent as UTF-8
on every path to a source, health probes, Retry-After, and the body cap."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping

import pytest

from incident_cli.config.model import SourceConfig
from incident_cli.errors import SourceError
from incident_cli.http import parse_retry_after, probe
from incident_cli.intake.sources import get_json, prometheus_query
from tests.support.binaries import free_port, serve_get

PASSWORD = "pässwörd€"
UTF8_BASIC = "Basic " + base64.b64encode(f"ops:{PASSWORD}".encode()).decode()


def source(url: str) -> SourceConfig:
    return SourceConfig(name="prom", type="prometheus", url=url, username="ops", password=PASSWORD)


def test_a_promql_query_sends_a_non_latin1_password_as_utf8() -> None:
    seen: list[str] = []

    def answer(headers: Mapping[str, str]) -> tuple[int, bytes]:
        seen.append(headers.get("Authorization", ""))
        data = {"resultType": "scalar", "result": [0, "1"]}
        return 200, json.dumps({"status": "success", "data": data}).encode()

    with serve_get(answer) as url:
        data = prometheus_query(source(url), "vector(1)", timeout=5)
    assert seen == [UTF8_BASIC]
    assert data == {"resultType": "scalar", "result": [0, "1"]}


def test_a_failed_promql_query_says_what_prometheus_answered() -> None:
    def answer(headers: Mapping[str, str]) -> tuple[int, bytes]:
        return 200, b'{"status": "error", "error": "parse error at char 3"}'

    with serve_get(answer) as url, pytest.raises(SourceError) as raised:
        prometheus_query(source(url), "up{", timeout=5)
    assert raised.value.message == "query failed: parse error at char 3"


def test_a_probe_reports_the_status_and_never_raises() -> None:
    def answer(headers: Mapping[str, str]) -> tuple[int, bytes]:
        return 503, b"{}"

    with serve_get(answer) as url:
        assert probe(url, timeout=5) == (False, "HTTP 503")
    assert probe(f"http://127.0.0.1:{free_port()}/health", timeout=5) == (
        False,
        "connection refused",
    )


def test_a_body_over_the_cap_fails_a_source_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("incident_cli.intake.sources.MAX_BODY_BYTES", 2048)

    def answer(headers: Mapping[str, str]) -> tuple[int, bytes]:
        return 200, b'{"data": "' + b"x" * 4096 + b'"}'

    with serve_get(answer) as url, pytest.raises(SourceError) as raised:
        get_json(source(url), "/api/v1/alerts", timeout=5, what="prom")
    assert raised.value.message == "prom: response larger than 2 KiB"


def test_retry_after_is_read_as_seconds_or_an_http_date() -> None:
    now = 1_800_000_000.0
    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after("Fri, 15 Jan 2027 08:00:30 GMT", now) == 30.0
    assert parse_retry_after("soon", now) is None
