"""Statuspage: create the incident once, PATCH it after, components follow the incident."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import responses

from tests.support.notify import (
    T0,
    FakeClock,
    Setup,
    ack,
    alert,
    deliver,
    make_setup,
    resolve,
    rows,
)

pytestmark = pytest.mark.usefixtures("both_backends")

API = "https://api.statuspage.io/v1"
KEY = "SPAPIKEY-0123456789"


def _setup(tmp_path: Path, extra: str = "") -> Setup:
    spec = (
        f"{{type: statuspage, page_id: page1, api_key: {KEY},"
        f" components: {{backend: cmp-backend, db: cmp-db}}{extra}}}"
    )
    return make_setup(tmp_path, {"sp": spec}, ["sp"])


@responses.activate(assert_all_requests_are_fired=True)
def test_it_creates_once_then_patches_and_sets_components_back_to_operational(
    tmp_path: Path,
) -> None:
    setup = _setup(tmp_path)
    setup.fire([alert(service="backend")])
    ack(setup, 1)
    resolve(setup, 1)
    responses.post(f"{API}/pages/page1/incidents", status=201, json={"id": "sp-inc-1"})
    responses.patch(f"{API}/pages/page1/incidents/sp-inc-1", status=200, json={"id": "sp-inc-1"})

    report = deliver(setup, FakeClock(T0 + 200))

    assert report.count("sent") == 3
    create, identified, resolved = responses.calls
    assert create.request.method == "POST"
    assert create.request.headers["Authorization"] == f"OAuth {KEY}"
    assert json.loads(create.request.body) == {
        "incident": {
            "name": "backend",  # the component, never label text (name_template)
            "status": "investigating",
            "impact_override": "critical",
            "body": "We are investigating this issue.",
            "component_ids": ["cmp-backend"],
            "components": {"cmp-backend": "major_outage"},
        }
    }
    assert create.request.url == f"{API}/pages/page1/incidents"
    assert identified.request.method == resolved.request.method == "PATCH"
    assert identified.request.url.endswith("/incidents/sp-inc-1")
    assert resolved.request.url.endswith("/incidents/sp-inc-1")
    assert json.loads(identified.request.body) == {
        "incident": {
            "status": "identified",
            "body": "The issue has been identified and is being worked on.",
            "component_ids": ["cmp-backend"],
            "components": {"cmp-backend": "major_outage"},
        }
    }
    assert json.loads(resolved.request.body) == {
        "incident": {
            "status": "resolved",
            "body": "This issue has been resolved.",
            "component_ids": ["cmp-backend"],
            "components": {"cmp-backend": "operational"},
        }
    }
    assert rows(setup, "SELECT * FROM channel_refs") == [
        {"incident_id": 1, "channel": "sp", "remote_id": "sp-inc-1"}
    ]


@responses.activate
def test_a_warning_degrades_and_an_unmapped_service_touches_no_component(tmp_path: Path) -> None:
    setup = _setup(tmp_path, ", component_label: tier")
    setup.config_path.write_text(
        setup.config_path.read_text().replace(
            "rules:\n",
            "rules:\n  - {name: warn, match: {alertname: Slow}, severity: warning}\n",
        )
    )
    from incident_cli.config.load import load_config

    setup.config = load_config(setup.config_path, {}, must_exist=True)
    setup.fire([alert("Slow", tier="db"), alert("Slow", tier="cache")])
    responses.post(f"{API}/pages/page1/incidents", status=201, json={"id": "x"})

    deliver(setup)

    first, second = (json.loads(c.request.body)["incident"] for c in responses.calls)
    assert first["components"] == {"cmp-db": "degraded_performance"}
    assert first["impact_override"] == "minor"
    assert "components" not in second
    assert "component_ids" not in second


@responses.activate(assert_all_requests_are_fired=True)
def test_the_api_url_can_be_overridden(tmp_path: Path) -> None:
    setup = _setup(tmp_path, ", api_url: 'http://127.0.0.1:9/sp/v1/'")
    setup.fire([alert(service="backend")])
    responses.post("http://127.0.0.1:9/sp/v1/pages/page1/incidents", status=201, json={"id": "a"})

    assert deliver(setup).count("sent") == 1
    [call] = responses.calls
    assert call.request.method == "POST"
    # The trailing slash of api_url is dropped: one slash before `pages`.
    assert call.request.url == "http://127.0.0.1:9/sp/v1/pages/page1/incidents"


@responses.activate
def test_a_created_incident_without_an_id_is_not_created_twice(tmp_path: Path) -> None:
    setup = _setup(tmp_path)
    setup.fire([alert(service="backend")])
    responses.post(f"{API}/pages/page1/incidents", status=201, body="<html>ok</html>")

    report = deliver(setup)

    assert report.count("dead") == 1
    assert "no id" in (report.dead[0].error or "")
    assert len(responses.calls) == 1


@responses.activate
def test_a_resolve_with_no_statuspage_incident_is_a_dead_letter_not_a_new_incident(
    tmp_path: Path,
) -> None:
    setup = _setup(tmp_path)
    setup.fire([alert(service="backend")])
    resolve(setup, 1)
    responses.post(f"{API}/pages/page1/incidents", status=422, json={"error": "bad"})

    report = deliver(setup, FakeClock(T0 + 200))

    # The firing row is dead; the resolve after it is not blocked by it, and has nothing to
    # update.
    assert [o.status for o in report.outcomes] == ["dead", "dead"]
    assert "no Statuspage incident to update" in (report.outcomes[1].error or "")
    assert len(responses.calls) == 1


@responses.activate
def test_storm_summaries_are_not_posted_to_the_public_page(tmp_path: Path) -> None:
    setup = _setup(tmp_path)
    setup.add_config("incidents: {storm: {max_new_per_tick: 1}}")
    setup.fire([alert(service="a"), alert(service="b")])

    report = deliver(setup)

    assert report.count("sent") == 1
    assert len(responses.calls) == 0


def test_approval_requests_and_the_breaker_never_reach_the_public_page(tmp_path: Path) -> None:
    from incident_cli.notify.channels.base import Message
    from incident_cli.notify.channels.registry import build

    channel = build(_setup(tmp_path).config.channels["sp"])
    incident = {"id": 1, "title": "down", "severity": "critical", "labels": {"service": "backend"}}
    approval = Message(
        id=1,
        channel="sp",
        event="approval",
        facts={"incident": incident, "action_id": 1, "argv": [["./fix.sh"]]},
        incident_id=1,
    )
    breaker = Message(id=2, channel="sp", event="breaker", facts={"reason": "too many"})
    assert channel.prepare(approval) is None
    assert channel.prepare(breaker) is None
