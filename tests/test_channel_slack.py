"""Slack: the incoming-webhook payload an on-call engineer acts on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import responses

from tests.support.notify import (
    T0,
    FakeClock,
    ack,
    alert,
    deliver,
    make_setup,
    resolve,
    rows,
)

pytestmark = pytest.mark.usefixtures("both_backends")

WEBHOOK = "https://hooks.slack.com/services/T000/B000/XXXXSECRET"


def _setup(tmp_path: Path, extra: str = "") -> object:
    return make_setup(
        tmp_path, {"slack": f'{{type: slack, webhook_url: "{WEBHOOK}"{extra}}}'}, ["slack"]
    )


@responses.activate
def test_it_posts_an_actionable_firing_message(tmp_path: Path) -> None:
    setup = _setup(tmp_path)
    setup.fire([alert(service="backend")])
    responses.post(WEBHOOK, body="ok")

    report = deliver(setup)

    assert report.count("sent") == 1
    assert len(responses.calls) == 1
    assert json.loads(responses.calls[0].request.body) == {
        "text": "[FIRING] BackendServiceDown: backend (incident 1)",
        "attachments": [
            {
                "fallback": "[FIRING] BackendServiceDown: backend (incident 1)",
                "color": "#d40e0d",
                "title": "[FIRING] BackendServiceDown: backend (incident 1)",
                "text": "BackendServiceDown is firing",
                "fields": [
                    {"title": "Severity", "value": "critical", "short": True},
                    {"title": "Incident", "value": "1", "short": True},
                    {
                        "title": "Labels",
                        "value": "alertname=BackendServiceDown\nservice=backend",
                        "short": False,
                    },
                    {
                        "title": "Links",
                        "value": "<https://runbooks.example.com/backend-down|Runbook>"
                        " · <https://grafana.example.com/d/abc|Grafana>",
                        "short": False,
                    },
                    {"title": "Acknowledge", "value": "`incident ack 1`", "short": False},
                ],
                "footer": "incident",
                "mrkdwn_in": ["text", "fields"],
            }
        ],
    }
    assert rows(setup)[0]["status"] == "sent"


@responses.activate
def test_acknowledged_and_resolved_messages_follow_in_order_with_their_colours(
    tmp_path: Path,
) -> None:
    setup = _setup(tmp_path)
    setup.fire([alert(service="backend")])
    ack(setup, 1)
    resolve(setup, 1)
    responses.post(WEBHOOK, body="ok")

    report = deliver(setup, FakeClock(T0 + 200))

    assert report.count("sent") == 3
    bodies = [json.loads(c.request.body) for c in responses.calls]
    assert [b["text"] for b in bodies] == [
        "[FIRING] BackendServiceDown: backend (incident 1)",
        "[ACKNOWLEDGED] BackendServiceDown: backend (incident 1)",
        "[RESOLVED] BackendServiceDown: backend (incident 1)",
    ]
    assert [b["attachments"][0]["color"] for b in bodies] == ["#d40e0d", "#7f8c8d", "#2eb886"]
    assert "Acknowledged by alice." in bodies[1]["attachments"][0]["text"]
    assert "Resolution: manual." in bodies[2]["attachments"][0]["text"]
    # Once acknowledged or resolved, the message no longer asks anyone to acknowledge it.
    assert all(
        f["title"] != "Acknowledge" for b in bodies[1:] for f in b["attachments"][0]["fields"]
    )


@responses.activate
def test_hostile_label_values_cannot_mention_everyone_or_fake_links(tmp_path: Path) -> None:
    setup = _setup(tmp_path)
    setup.fire([alert(service="<!channel> <https://evil.example|click> & $(id)")])
    responses.post(WEBHOOK, body="ok")

    deliver(setup)

    body = responses.calls[0].request.body.decode()
    assert "<!channel>" not in body
    assert "<https://evil.example" not in body
    labels = json.loads(body)["attachments"][0]["fields"][2]["value"]
    assert "&lt;!channel&gt; &lt;https://evil.example|click&gt; &amp; $(id)" in labels


@responses.activate
def test_a_huge_label_value_is_clipped(tmp_path: Path) -> None:
    setup = _setup(tmp_path)
    setup.fire([alert(service="x" * (1 << 20))])
    responses.post(WEBHOOK, body="ok")

    deliver(setup)

    assert len(responses.calls[0].request.body) < 5000


@responses.activate
def test_channel_and_username_options_are_sent(tmp_path: Path) -> None:
    setup = _setup(tmp_path, ", channel: '#ops', username: incident-bot")
    setup.fire([alert(service="backend")])
    responses.post(WEBHOOK, body="ok")

    deliver(setup)

    body = json.loads(responses.calls[0].request.body)
    assert (body["channel"], body["username"]) == ("#ops", "incident-bot")


@responses.activate
def test_a_flapping_incident_says_so(tmp_path: Path) -> None:
    setup = make_setup(
        tmp_path,
        {"slack": f'{{type: slack, webhook_url: "{WEBHOOK}"}}'},
        ["slack"],
    )
    setup.add_config("incidents: {flapping: {changes: 2, window: 1h}}")
    # fire, clear until it auto-resolves, fire again: the reopen is the 2nd change and starts
    # flapping while the incident is open.
    setup.fire([alert(service="backend")], T0)
    setup.fire([], T0 + 400)
    setup.fire([], T0 + 460)
    setup.fire([alert(service="backend")], T0 + 500)
    responses.post(WEBHOOK, body="ok")

    deliver(setup, FakeClock(T0 + 600))

    texts = [json.loads(c.request.body)["text"] for c in responses.calls]
    assert texts[-1] == "[FLAPPING] BackendServiceDown: backend (incident 1)"
    last = json.loads(responses.calls[-1].request.body)["attachments"][0]["text"]
    assert "Flapping started" in last


@responses.activate
def test_a_storm_summary_names_the_top_alerts_and_how_to_list_them(tmp_path: Path) -> None:
    setup = _setup(tmp_path)
    setup.add_config("incidents: {storm: {max_new_per_tick: 2}}")
    setup.fire([alert(service=f"svc{i}") for i in range(3)], T0)
    responses.post(WEBHOOK, body="ok")

    deliver(setup)

    assert len(responses.calls) == 1
    body = json.loads(responses.calls[0].request.body)
    assert body["text"] == "[STORM] 3 incidents opened at once"
    text = body["attachments"][0]["text"]
    assert "BackendServiceDown x3" in text
    assert "incident list --status open" in text
    assert rows(setup)[0]["incident_id"] is None


@responses.activate
def test_slack_is_rate_limited_to_one_message_a_second(tmp_path: Path) -> None:
    setup = _setup(tmp_path)
    setup.fire([alert(service=f"svc{i}") for i in range(3)], T0)
    responses.post(WEBHOOK, body="ok")
    clock = FakeClock(T0 + 1)

    deliver(setup, clock)

    assert len(responses.calls) == 3
    assert sum(clock.sleeps) >= 2.0 - 1e-9
    assert clock.now - (T0 + 1) < 3
