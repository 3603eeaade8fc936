"""The generic webhook: a JSON POST of the incident and the event."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import responses

from tests.support.notify import T0, FakeClock, alert, deliver, make_setup, resolve

pytestmark = pytest.mark.usefixtures("both_backends")

URL = "https://ops.example.com/incident-hook"


@responses.activate
def test_it_posts_the_incident_and_the_event_with_its_headers(tmp_path: Path) -> None:
    setup = make_setup(
        tmp_path,
        {"hook": f'{{type: webhook, url: "{URL}", headers: {{X-Api-Key: hook-key-123}}}}'},
    )
    setup.fire([alert(service="backend")])
    resolve(setup, 1)
    responses.post(URL, status=204)

    report = deliver(setup, FakeClock(T0 + 200))

    assert report.count("sent") == 2
    firing, resolved = (json.loads(c.request.body) for c in responses.calls)
    assert responses.calls[0].request.headers["X-Api-Key"] == "hook-key-123"
    assert responses.calls[0].request.headers["Content-Type"] == "application/json"
    assert firing["version"] == "1"
    assert (firing["event"], firing["status"], firing["notification_id"]) == ("firing", "firing", 1)
    assert firing["incident"]["id"] == 1
    assert firing["incident"]["labels"] == {"alertname": "BackendServiceDown", "service": "backend"}
    assert firing["incident"]["status"] == "open"
    assert firing["details"] == {
        "runbook": "https://runbooks.example.com/backend-down",
        "grafana": "https://grafana.example.com/d/abc",
        "ack_command": "incident ack 1",
    }
    assert firing["text"].startswith("[FIRING] BackendServiceDown: backend\nSeverity: critical")
    assert (resolved["event"], resolved["incident"]["status"]) == ("resolved", "resolved")
    assert resolved["incident"]["resolution"] == "manual"


@responses.activate
def test_a_redirect_is_not_followed(tmp_path: Path) -> None:
    setup = make_setup(tmp_path, {"hook": f'{{type: webhook, url: "{URL}"}}'})
    setup.fire([alert(service="backend")])
    responses.post(URL, status=302, headers={"Location": "https://elsewhere.example.com/"})

    report = deliver(setup)

    assert len(responses.calls) == 1
    assert report.dead[0].error == "webhook answered HTTP 302 (redirects are not followed)"
