"""Delivery: leases, order per incident and channel, retries, backoff, dead letters, rate limits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
import responses

from incident_cli.config.load import load_config
from incident_cli.notify.channels.registry import build
from incident_cli.notify.delivery import GIVE_UP_AFTER, _Delivery
from incident_cli.notify.outbox import pending_rows
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

SLACK = "https://hooks.slack.com/services/T/B/secret-path"
PD = "https://events.pagerduty.com/v2/enqueue"


def _setup(tmp_path: Path, slack_extra: str = "", pd_extra: str = "") -> Setup:
    return make_setup(
        tmp_path,
        {
            "slack": f'{{type: slack, webhook_url: "{SLACK}"{slack_extra}}}',
            "pd": f"{{type: pagerduty, routing_key: key-0123456789{pd_extra}}}",
        },
    )


def _timeline(setup: Setup, kind: str) -> list[dict[str, object]]:
    return rows(setup, f"SELECT * FROM timeline WHERE kind = '{kind}' ORDER BY id")


@responses.activate
def test_a_delivered_row_is_marked_sent_with_a_timeline_event(tmp_path: Path) -> None:
    setup = _setup(tmp_path)
    setup.fire([alert(service="backend")])
    responses.post(SLACK, body="ok")
    responses.post(PD, status=202)

    report = deliver(setup, FakeClock(T0 + 5))

    assert report.count("sent") == 2
    for row in rows(setup):
        assert (row["status"], row["attempts"], row["sent_at"], row["error"]) == (
            "sent",
            1,
            T0 + 5,
            None,
        )
        assert row["lease_until"] is None
    # The channels send side by side on threads of their own: their events come in either order.
    events = sorted(_timeline(setup, "notified"), key=lambda e: str(e["message"]))
    assert [e["message"] for e in events] == [
        "firing message delivered to pd",
        "firing message delivered to slack",
    ]
    assert json.loads(str(events[1]["data"])) == {
        "channel": "slack",
        "event": "firing",
        "notification_id": 1,
        "attempts": 1,
    }


def test_a_row_is_claimed_by_compare_and_swap_only_once(tmp_path: Path) -> None:
    setup = _setup(tmp_path)
    setup.fire([alert(service="backend")])
    db = setup.db()
    channel = build(setup.config.channels["slack"])
    row = pending_rows(db, "slack")[0]
    first = _Delivery(db, setup.config, lambda: T0 + 1)
    second = _Delivery(setup.db(), setup.config, lambda: T0 + 2)

    assert first.claim(row, channel, "token-a", {}) is not None
    assert second.claim(row, channel, "token-b", {}) is None
    # Only the lease holder can mark it.
    assert second.mark_retry(row, "token-b", 1, "nope", T0 + 100) is not None
    assert rows(setup)[0]["error"] is None
    assert rows(setup)[0]["attempts"] == 1


@responses.activate
def test_a_row_whose_tick_died_after_claiming_is_sent_once_its_lease_expires(
    tmp_path: Path,
) -> None:
    setup = _setup(tmp_path)
    setup.fire([alert(service="backend")])
    db = setup.db()
    row = pending_rows(db, "slack")[0]
    # A tick claims the row and dies before marking it.
    assert _Delivery(db, setup.config, lambda: T0 + 1).claim(
        row, build(setup.config.channels["slack"]), "dead-tick", {}
    )
    responses.post(SLACK, body="ok")

    assert deliver(setup, FakeClock(T0 + 2), only_channel="slack").outcomes == []
    report = deliver(setup, FakeClock(T0 + 120), only_channel="slack")

    assert [(o.status, o.attempts) for o in report.outcomes] == [("sent", 2)]
    assert len(responses.calls) == 1


@responses.activate
def test_it_retries_after_429_within_the_tick_when_retry_after_is_short(tmp_path: Path) -> None:
    setup = _setup(tmp_path)
    setup.fire([alert(service="backend")])
    responses.post(PD, status=429, headers={"Retry-After": "2"})
    responses.post(PD, status=202)
    clock = FakeClock(T0 + 1)

    report = deliver(setup, clock, only_channel="pd")

    assert [(o.status, o.attempts) for o in report.outcomes] == [("sent", 2)]
    assert len(responses.calls) == 2
    assert max(clock.sleeps) >= 2.0


@responses.activate
def test_a_long_retry_after_is_honoured_across_ticks(tmp_path: Path) -> None:
    setup = _setup(tmp_path)
    setup.fire([alert(service="backend")])
    responses.post(PD, status=429, headers={"Retry-After": "120"})
    clock = FakeClock(T0 + 1)

    report = deliver(setup, clock, only_channel="pd")

    assert report.outcomes[0].status == "retry"
    assert report.outcomes[0].error == "pagerduty answered HTTP 429"
    assert clock.sleeps == []
    (row,) = rows(setup, "SELECT * FROM notifications WHERE channel = 'pd'")
    assert row["next_attempt_at"] == T0 + 1 + 120
    assert deliver(setup, FakeClock(T0 + 60), only_channel="pd").outcomes == []
    assert len(responses.calls) == 1


@responses.activate
def test_5xx_and_network_errors_back_off_exponentially_across_ticks(tmp_path: Path) -> None:
    setup = _setup(tmp_path)
    setup.fire([alert(service="backend")])
    responses.post(SLACK, status=503)
    responses.post(SLACK, body=requests.exceptions.ConnectionError(f"refused {SLACK}"))
    responses.post(SLACK, status=500)
    responses.post(SLACK, body="ok")

    now = T0 + 1
    delays = []
    for _ in range(3):
        report = deliver(setup, FakeClock(now), only_channel="slack")
        (outcome,) = report.outcomes
        assert outcome.status == "retry"
        assert outcome.next_attempt_at is not None
        delays.append(outcome.next_attempt_at - now)
        # Nothing is tried again before it is due.
        assert (
            deliver(setup, FakeClock(outcome.next_attempt_at - 1), only_channel="slack").outcomes
            == []
        )
        now = outcome.next_attempt_at
    assert delays == [30.0, 60.0, 120.0]
    assert rows(setup)[0]["error"] == "slack answered HTTP 500"
    final = deliver(setup, FakeClock(now), only_channel="slack")
    assert [(o.status, o.attempts) for o in final.outcomes] == [("sent", 4)]
    assert rows(setup)[0]["error"] is None


@responses.activate
def test_the_network_error_text_never_holds_the_url(tmp_path: Path) -> None:
    setup = _setup(tmp_path)
    setup.fire([alert(service="backend")])
    responses.post(SLACK, body=requests.exceptions.ConnectionError(f"Max retries: {SLACK}"))

    report = deliver(setup, only_channel="slack")

    assert report.outcomes[0].error == "slack: connection failed"


@responses.activate
def test_other_4xx_is_a_dead_letter_with_a_timeline_event(tmp_path: Path) -> None:
    setup = _setup(tmp_path)
    setup.fire([alert(service="backend")])
    responses.post(SLACK, status=404, body="channel_not_found")

    report = deliver(setup, only_channel="slack")

    assert [(o.status, o.error) for o in report.outcomes] == [
        ("dead", "slack answered HTTP 404: channel_not_found")
    ]
    assert rows(setup)[0]["status"] == "dead"
    (event,) = _timeline(setup, "notification_failed")
    assert event["message"] == (
        "firing message to slack not delivered after 1 attempt(s):"
        " slack answered HTTP 404: channel_not_found"
    )
    assert deliver(setup, FakeClock(T0 + 3600), only_channel="slack").outcomes == []


@responses.activate
def test_a_later_message_waits_for_an_earlier_one_of_the_same_incident(tmp_path: Path) -> None:
    setup = _setup(tmp_path)
    setup.fire([alert(service="backend")])
    resolve(setup, 1, T0 + 10)
    responses.post(PD, status=500)
    responses.post(PD, status=202)

    first = deliver(setup, FakeClock(T0 + 20), only_channel="pd")
    # The trigger failed: its resolve is not sent ahead of it.
    assert [(o.event, o.status) for o in first.outcomes] == [("firing", "retry")]
    assert len(responses.calls) == 1

    second = deliver(setup, FakeClock(T0 + 60), only_channel="pd")
    assert [(o.event, o.status) for o in second.outcomes] == [
        ("firing", "sent"),
        ("resolved", "sent"),
    ]
    actions = [json.loads(c.request.body)["event_action"] for c in responses.calls]
    assert actions == ["trigger", "trigger", "resolve"]


@responses.activate
def test_a_dead_message_does_not_block_the_ones_after_it(tmp_path: Path) -> None:
    setup = _setup(tmp_path)
    setup.fire([alert(service="backend")])
    ack(setup, 1, T0 + 5)
    responses.post(SLACK, status=400, body="invalid_payload")
    responses.post(SLACK, body="ok")

    report = deliver(setup, FakeClock(T0 + 10), only_channel="slack")

    assert [(o.event, o.status) for o in report.outcomes] == [
        ("firing", "dead"),
        ("acknowledged", "sent"),
    ]


@responses.activate
def test_one_failing_channel_does_not_hold_up_another(tmp_path: Path) -> None:
    setup = _setup(tmp_path)
    setup.fire([alert(service="a"), alert(service="b")])
    responses.post(SLACK, status=502)
    responses.post(PD, status=202)

    report = deliver(setup)

    assert report.count("sent") == 2
    assert {o.channel for o in report.outcomes if o.status == "sent"} == {"pd"}
    # The down channel got one try this tick, not one timeout per row.
    assert [o.status for o in report.outcomes if o.channel == "slack"] == ["retry"]
    assert report.deferred == 1


@responses.activate
def test_pagerduty_is_paced_at_120_a_minute_and_rate_limit_0_is_unlimited(
    tmp_path: Path,
) -> None:
    responses.post(PD, status=202)
    setup = _setup(tmp_path)
    setup.fire([alert(service=str(i)) for i in range(4)])
    clock = FakeClock(T0 + 1)
    deliver(setup, clock, only_channel="pd")
    assert sum(clock.sleeps) == 1.5

    (tmp_path / "b").mkdir()
    fast = _setup(tmp_path / "b", slack_extra=", rate_limit: '0'", pd_extra=", rate_limit: off")
    fast.fire([alert(service=str(i)) for i in range(4)])
    clock = FakeClock(T0 + 1)
    responses.post(SLACK, body="ok")
    report = deliver(fast, clock)
    assert report.count("sent") == 8
    assert clock.sleeps == []


@responses.activate
def test_the_tick_budget_leaves_the_rest_for_the_next_tick(tmp_path: Path) -> None:
    setup = _setup(tmp_path)
    setup.fire([alert(service=str(i)) for i in range(3)])
    responses.post(SLACK, body="ok")

    report = deliver(setup, only_channel="slack", budget=1.5)

    assert (report.count("sent"), report.deferred) == (2, 1)
    assert deliver(setup, FakeClock(T0 + 61), only_channel="slack").count("sent") == 1


def test_rows_for_a_channel_that_is_now_disabled_are_held_not_lost(tmp_path: Path) -> None:
    setup = _setup(tmp_path)
    setup.fire([alert(service="backend")])
    text = setup.config_path.read_text().replace(SLACK, "${SLACK_URL:-}")
    setup.config_path.write_text(text)
    setup.config = load_config(setup.config_path, {}, must_exist=True)

    with responses.RequestsMock() as mock:
        mock.post(PD, status=202)
        report = deliver(setup)

    held = [o for o in report.outcomes if o.status == "held"]
    assert [(o.channel, o.error) for o in held] == [
        ("slack", "channel slack is disabled (webhook_url is empty)")
    ]
    assert rows(setup)[0]["status"] == "pending"
    assert rows(setup)[0]["attempts"] == 0


@responses.activate
def test_it_gives_up_on_a_message_still_failing_a_day_later(tmp_path: Path) -> None:
    setup = _setup(tmp_path)
    setup.fire([alert(service="backend")])
    responses.post(SLACK, status=503)

    report = deliver(setup, FakeClock(T0 + GIVE_UP_AFTER + 1), only_channel="slack")

    assert report.count("dead") == 1
    assert report.dead[0].error == "gave up after 1 attempts over 24h: slack answered HTTP 503"


@responses.activate
def test_a_message_whose_incident_was_archived_meanwhile_is_just_marked(tmp_path: Path) -> None:
    setup = _setup(tmp_path)
    setup.fire([alert(service="backend")])
    db = setup.db()
    messages = pending_rows(db)

    def archive_then_ok(request: object) -> tuple[int, dict[str, str], str]:
        # Another process archives while the send is on its way (sends run on their own thread).
        other = setup.db()
        with other.conn:
            other.conn.execute("DELETE FROM incidents")
        other.close()
        return 200, {}, "ok"

    responses.add_callback("POST", SLACK, callback=archive_then_ok)
    report = deliver(setup, only_channel="slack")

    assert messages and report.count("sent") == 1
    assert rows(setup) == []
