"""PagerDuty Events API v2: trigger, acknowledge, resolve under one dedup_key per incident."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import responses

from incident_cli.notify.channels.base import Message
from incident_cli.notify.channels.registry import build
from tests.support.notify import (
    T0,
    FakeClock,
    Setup,
    ack,
    alert,
    deliver,
    make_setup,
    resolve,
)

pytestmark = pytest.mark.usefixtures("both_backends")

SCHEMA = json.loads(
    (Path(__file__).parent / "fixtures/pagerduty/events-v2.request.schema.json").read_text()
)
EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
KEY = "R0UTINGKEY0123456789abcdef"


def _setup(tmp_path: Path, extra: str = "") -> Setup:
    return make_setup(tmp_path, {"pd": f"{{type: pagerduty, routing_key: {KEY}{extra}}}"}, ["pd"])


def _events() -> list[dict[str, Any]]:
    return [json.loads(c.request.body) for c in responses.calls]


@responses.activate
def test_trigger_acknowledge_resolve_share_one_dedup_key(tmp_path: Path) -> None:
    setup = _setup(tmp_path)
    setup.fire([alert(service="backend")])
    ack(setup, 1)
    resolve(setup, 1)
    responses.post(EVENTS_URL, status=202, json={"status": "success"})

    report = deliver(setup, FakeClock(T0 + 200))

    assert report.count("sent") == 3
    trigger, acknowledge, resolved = _events()
    for event in (trigger, acknowledge, resolved):
        jsonschema.validate(event, SCHEMA)
    assert trigger == {
        "routing_key": KEY,
        "event_action": "trigger",
        "dedup_key": trigger["dedup_key"],
        "payload": {
            "summary": "[FIRING] BackendServiceDown: backend: BackendServiceDown is firing",
            "source": "prometheus",
            "severity": "critical",
            "timestamp": "2027-01-15T07:59:00Z",
            "component": "backend",
            "class": "BackendServiceDown",
            "custom_details": {
                "alertname": "BackendServiceDown",
                "service": "backend",
                "incident_id": 1,
                "summary": "BackendServiceDown is firing",
                "acknowledge": "incident ack 1",
            },
        },
        "client": "incident",
        "links": [
            {"href": "https://runbooks.example.com/backend-down", "text": "Runbook"},
            {"href": "https://grafana.example.com/d/abc", "text": "Grafana"},
        ],
    }
    assert acknowledge == {
        "routing_key": KEY,
        "event_action": "acknowledge",
        "dedup_key": trigger["dedup_key"],
    }
    assert resolved == {
        "routing_key": KEY,
        "event_action": "resolve",
        "dedup_key": trigger["dedup_key"],
    }
    assert trigger["dedup_key"].startswith("incident-cli/1/")


def _message(facts: dict[str, Any], event: str = "firing", id: int = 1) -> Message:
    return Message(id=id, channel="pd", event=event, facts=facts, incident_id=1)


def _incident(**overrides: Any) -> dict[str, Any]:
    incident = {
        "id": 1,
        "key": "rule:alertname=X",
        "title": "X",
        "severity": "warning",
        "source": "prometheus",
        "labels": {"alertname": "X"},
        "annotations": {},
        "opened_at": "2027-01-15T08:00:00Z",
    }
    incident.update(overrides)
    return incident


def test_dedup_key_and_summary_stay_within_pagerduty_limits(tmp_path: Path) -> None:
    channel = build(_setup(tmp_path).config.channels["pd"])
    huge = "y" * (1 << 20)
    facts = {
        "event": "firing",
        "incident": _incident(key="k" * 100_000, title=huge, annotations={"summary": huge}),
    }

    event = channel.prepare(_message(facts)).body

    jsonschema.validate(event, SCHEMA)
    assert len(event["dedup_key"]) <= 255
    assert len(event["payload"]["summary"]) <= 1024
    assert len(json.dumps(event)) < 512 * 1024


def test_the_dedup_key_is_stable_for_the_incident_and_differs_between_incidents(
    tmp_path: Path,
) -> None:
    channel = build(_setup(tmp_path).config.channels["pd"])
    first = channel.prepare(_message({"incident": _incident()})).body["dedup_key"]
    again = channel.prepare(_message({"incident": _incident()}, "resolved", 9)).body["dedup_key"]
    other = channel.prepare(_message({"incident": _incident(id=2)})).body["dedup_key"]
    assert first == again
    assert first != other


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        ("critical", "critical"),
        ("error", "error"),
        ("warning", "warning"),
        ("info", "info"),
        ("weird", "warning"),
    ],
)
def test_severity_maps_to_pagerdutys_four(tmp_path: Path, ours: str, theirs: str) -> None:
    channel = build(_setup(tmp_path).config.channels["pd"])
    event = channel.prepare(_message({"incident": _incident(severity=ours)})).body
    assert event["payload"]["severity"] == theirs
    jsonschema.validate(event, SCHEMA)


def test_an_escalation_triggers_and_says_why(tmp_path: Path) -> None:
    channel = build(_setup(tmp_path).config.channels["pd"])
    facts = {"incident": _incident(), "reason": "recovery failed 3 times"}
    event = channel.prepare(_message(facts, "escalation")).body
    jsonschema.validate(event, SCHEMA)
    assert event["event_action"] == "trigger"
    assert event["payload"]["summary"].startswith("[ESCALATED] X")
    assert "recovery failed 3 times" in event["payload"]["custom_details"]["notes"]


def test_a_storm_summary_triggers_under_its_own_key(tmp_path: Path) -> None:
    channel = build(_setup(tmp_path).config.channels["pd"])
    facts = {
        "event": "storm",
        "count": 30,
        "top_alerts": [{"alertname": "X", "incidents": 30}],
        "by_severity": {"critical": 30},
    }
    message = Message(id=77, channel="pd", event="storm", facts=facts)
    event = channel.prepare(message).body
    jsonschema.validate(event, SCHEMA)
    assert event["dedup_key"] == "incident-cli/storm/77"
    assert event["payload"]["severity"] == "critical"
    assert event["payload"]["summary"].startswith("[STORM] 30 incidents")


@responses.activate
def test_the_events_url_can_be_overridden(tmp_path: Path) -> None:
    setup = _setup(tmp_path, ", url: 'http://127.0.0.1:9/v2/enqueue'")
    setup.fire([alert(service="backend")])
    responses.post("http://127.0.0.1:9/v2/enqueue", status=202)

    assert deliver(setup).count("sent") == 1
    assert responses.calls[0].request.url == "http://127.0.0.1:9/v2/enqueue"


@responses.activate
def test_a_400_is_a_dead_letter_that_does_not_stop_other_incidents(tmp_path: Path) -> None:
    setup = _setup(tmp_path)
    setup.fire([alert(service="a")])
    setup.fire([alert(service="a"), alert(service="b")])
    responses.post(
        EVENTS_URL,
        status=400,
        json={"status": "invalid event", "message": "Event object is invalid"},
    )

    report = deliver(setup)

    # The first 400 is permanent; the next incident's row is independent and is tried too.
    assert report.count("dead") == 2
    assert report.dead[0].error == (
        'pagerduty answered HTTP 400: {"status": "invalid event",'
        ' "message": "Event object is invalid"}'
    )


def test_a_storm_and_its_resolution_share_one_dedup_key() -> None:
    from incident_cli.notify.channels.base import Message
    from incident_cli.notify.channels.pagerduty import dedup_key

    storm = Message(
        id=7, channel="pd", event="storm", facts={"storm_id": "1800000000-12", "count": 30}
    )
    over = Message(
        id=99, channel="pd", event="resolved", facts={"storm_id": "1800000000-12", "count": 30}
    )
    assert dedup_key(storm) == dedup_key(over) == "incident-cli/storm/1800000000-12"


def test_a_breaker_pages_under_its_own_key_and_an_approval_request_does_not(
    tmp_path: Path,
) -> None:
    channel = build(_setup(tmp_path).config.channels["pd"])
    facts = {
        "event": "breaker",
        "reason": "more than 10 command/block_ip actions within 15m (10 started, 1 more due)",
        "opened_at": "2027-01-15T08:00:00Z",
        "reset_command": "incident breaker reset --by NAME --note TEXT",
    }
    outgoing = channel.prepare(Message(id=5, channel="pd", event="breaker", facts=facts))
    assert outgoing is not None
    event = outgoing.body
    jsonschema.validate(event, SCHEMA)
    assert event["event_action"] == "trigger"
    assert event["dedup_key"] == "incident-cli/breaker/2027-01-15T08:00:00Z"
    assert event["payload"]["severity"] == "critical"
    assert event["payload"]["summary"].startswith("[BREAKER OPEN] recovery breaker open")
    assert "incident breaker reset" in event["payload"]["custom_details"]["notes"]

    approval = {"incident": _incident(), "action_id": 3, "argv": [["./fix.sh", "api"]]}
    assert channel.prepare(_message(approval, "approval")) is None
