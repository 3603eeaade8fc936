"""`incident sync` against a local fake of the PagerDuty REST API v2 (list incidents by
incident_key): acks and resolves there flow back here; hostile answers change nothing."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from incident_cli.lifecycle.poll import apply_poll
from incident_cli.notify.channels.pagerduty import incident_dedup_key
from tests.support import backend
from tests.support.binaries import run_cli
from tests.support.notify import (
    T0,
    FakeClock,
    Received,
    Reply,
    Setup,
    alert,
    closed_port,
    deliver,
    dump_db,
    make_setup,
    receiver,
    resolve,
    rows,
    sync,
)
from tests.support.notify import (
    incident_row as incident,
)

pytestmark = pytest.mark.usefixtures("both_backends")

TOKEN = "u+s3cr3tRestToken"
ROUTING = "R0UTINGKEY0123456789abcdef"
FIRING = alert(service="backend")


def pd_incident(status: str, **extra: Any) -> dict[str, Any]:
    """One incident as the REST API v2 lists it (the fields we read, and a few we do not)."""
    return {
        "id": "PT4KHLK",
        "type": "incident",
        "incident_number": 1234,
        "status": status,
        "incident_key": "whatever",
        "html_url": "https://acme.pagerduty.com/incidents/PT4KHLK",
        **extra,
    }


def ok(*incidents: dict[str, Any]) -> Reply:
    body = {"incidents": list(incidents), "limit": 1, "offset": 0, "more": False}
    return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()


class FakePagerDuty:
    """The Events API (accepts everything) and GET /incidents answered by `answer`."""

    def __init__(self) -> None:
        self.answer: Callable[[Received], Reply] = lambda request: ok()
        self.reads: list[Received] = []
        self.events: list[Any] = []

    def __call__(self, request: Received) -> Reply:
        if request.path == "/v2/enqueue":
            self.events.append(request.body)
            return 202, {}, b'{"status":"success","dedup_key":"x"}'
        self.reads.append(request)
        return self.answer(request)


@contextmanager
def pagerduty(tmp_path: Path, extra: str = "") -> Iterator[tuple[Setup, FakePagerDuty]]:
    fake = FakePagerDuty()
    with receiver(fake) as server:
        spec = (
            f"{{type: pagerduty, routing_key: {ROUTING}, url: '{server.url}/v2/enqueue',"
            f" api_token: '{TOKEN}', sync: true, api_url: '{server.url}/'{extra}}}"
        )
        setup = make_setup(tmp_path, {"pd": spec}, ["pd"])
        setup.fire([FIRING])
        assert deliver(setup).count("sent") == 1  # PagerDuty was paged: now there is a key
        yield setup, fake


def timeline(setup: Setup) -> list[tuple[str, str, str | None]]:
    return [
        (r["kind"], r["message"], r["actor"])
        for r in rows(setup, "SELECT * FROM timeline WHERE incident_id = 1 ORDER BY id")
    ]


def test_the_request_is_the_documented_list_incidents_call(tmp_path: Path) -> None:
    with pagerduty(tmp_path) as (setup, fake):
        result = sync(setup)

    assert result.checked == 1 and not result.errors
    (request,) = fake.reads
    assert request.method == "GET"
    url = urlsplit(request.path)
    assert url.path == "/incidents"
    key = incident_dedup_key(1, incident(setup)["key"])
    assert parse_qs(url.query) == {
        "incident_key": [key],
        "sort_by": ["created_at:desc"],
        "limit": ["1"],
    }
    assert request.headers["Authorization"] == f"Token token={TOKEN}"
    assert request.headers["Accept"] == "application/vnd.pagerduty+json;version=2"
    # The key we ask about is the dedup_key our events carry.
    (event,) = fake.events
    assert event["dedup_key"] == key
    assert incident(setup)["status"] == "open"


def test_an_ack_in_pagerduty_acknowledges_here_by_who_acked(tmp_path: Path) -> None:
    with pagerduty(tmp_path) as (setup, fake):
        fake.answer = lambda request: ok(
            pd_incident(
                "acknowledged",
                acknowledgements=[
                    {"at": "2027-01-15T08:01:00Z", "acknowledger": {"summary": "Earl Early"}},
                    {"at": "2027-01-15T08:02:00Z", "acknowledger": {"summary": "Ada\nOncall"}},
                ],
                assignments=[{"assignee": {"summary": "Somebody Else"}}],
            )
        )
        result = sync(setup)
        again = sync(setup, T0 + 120)

    assert result.acknowledged == [1] and not result.errors
    row = incident(setup)
    assert (row["status"], row["acknowledged_by"], row["acknowledged_at"]) == (
        "acknowledged",
        "pagerduty:Ada Oncall",
        T0 + 60,
    )
    assert ("acknowledged", "acknowledged by pagerduty:Ada Oncall", "pagerduty:Ada Oncall") in (
        timeline(setup)
    )
    # The same lifecycle as `incident ack`: the other channels hear of it (here: PagerDuty).
    assert [r["event"] for r in rows(setup)] == ["firing", "acknowledged"]
    assert again.acknowledged == [] and not again.errors  # once only


def test_a_resolve_in_pagerduty_while_alerts_fire_holds_them_as_incident_resolve(
    tmp_path: Path,
) -> None:
    (tmp_path / "synced").mkdir()
    (tmp_path / "by-hand").mkdir()
    with pagerduty(tmp_path / "synced") as (setup, fake):
        fake.answer = lambda request: ok(
            pd_incident("resolved", last_status_change_by={"summary": "Bo Resolver"})
        )
        result = sync(setup, T0 + 120)
    assert result.resolved == [1]
    row = incident(setup)
    assert (row["status"], row["resolution"]) == ("resolved", "manual")
    assert ("resolved", "resolved by pagerduty:Bo Resolver", "pagerduty:Bo Resolver") in (
        timeline(setup)
    )

    # The same incident resolved with `incident resolve` at the same time.
    by_hand = make_setup(tmp_path / "by-hand", {"pd": "{type: pagerduty, routing_key: k}"}, [])
    by_hand.fire([FIRING])
    resolve(by_hand, 1, T0 + 120)

    def alerts(s: Setup) -> list[dict[str, Any]]:
        return rows(s, "SELECT * FROM alerts ORDER BY id")

    assert alerts(setup) == alerts(by_hand)
    # The alert still fires: held, it opens nothing, as after `incident resolve`.
    for s in (setup, by_hand):
        db = s.db()
        try:
            assert apply_poll(db, s.config, {"prometheus": [FIRING]}, {}, T0 + 180).opened == []
        finally:
            db.close()
    assert alerts(setup) == alerts(by_hand)
    assert incident(setup)["status"] == "resolved"


def test_an_incident_pagerduty_does_not_know_or_still_triggered_is_left_alone(
    tmp_path: Path,
) -> None:
    with pagerduty(tmp_path) as (setup, fake):
        assert sync(setup).checked == 1  # not there
        fake.answer = lambda request: ok(pd_incident("triggered"))
        assert sync(setup).checked == 1
    assert incident(setup)["status"] == "open"


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ((200, {}, b"{not json"), "the answer is not a list of incidents"),
        (
            (200, {}, b'{"incidents": {"status": "resolved"}}'),
            "the answer is not a list of incidents",
        ),
        ((200, {}, b'{"incidents": [{"status": "gone"}]}'), "the answer has no incident status"),
        ((500, {}, b"oops"), "HTTP 500"),
        ((401, {}, f"bad token {TOKEN}".encode()), "HTTP 401"),
    ],
)
def test_a_hostile_answer_changes_nothing_and_is_a_warning(
    tmp_path: Path, answer: Reply, error: str
) -> None:
    with pagerduty(tmp_path) as (setup, fake):
        fake.answer = lambda request: answer
        result = sync(setup)
    assert result.errors == [f"channel pd: cannot read PagerDuty incidents: {error}"]
    assert incident(setup)["status"] == "open"
    assert TOKEN not in dump_db(setup.db_path)


def test_a_429_is_honoured_across_ticks(tmp_path: Path) -> None:
    with pagerduty(tmp_path) as (setup, fake):
        setup.fire([alert(service="frontend")], T0 + 1)
        assert deliver(setup, FakeClock(T0 + 2)).count("sent") == 1
        fake.answer = lambda request: (429, {"Retry-After": "120"}, b'{"error": "rate"}')
        first = sync(setup, T0 + 60)
        assert len(fake.reads) == 1  # it stopped at the first 429: the second can wait
        assert first.errors == [
            "channel pd: cannot read PagerDuty incidents: rate limited (HTTP 429)"
        ]

        waiting = sync(setup, T0 + 120)  # within the 120 s it asked for: not asked at all
        assert len(fake.reads) == 1
        assert waiting.errors == [] and waiting.notes == [
            "channel pd: rate limited, next read in 60s"
        ]

        fake.answer = lambda request: ok(pd_incident("acknowledged"))
        after = sync(setup, T0 + 181)
    assert len(fake.reads) == 3 and after.acknowledged == [1, 2]
    assert incident(setup)["acknowledged_by"] == "pagerduty:unknown"


def test_the_api_down_is_a_warning(tmp_path: Path) -> None:
    with pagerduty(tmp_path, ", timeout: 2s") as (setup, _fake):
        url = urlsplit(setup.config.channels["pd"].options.value("api_url"))
    text = setup.config_path.read_text()
    setup.config_path.write_text(text.replace(url.netloc, f"127.0.0.1:{closed_port()}"))
    setup.add_config("")
    result = sync(setup)
    assert result.errors == ["channel pd: cannot read PagerDuty incidents: connection refused"]
    assert incident(setup)["status"] == "open"


def test_sync_true_needs_a_token(tmp_path: Path) -> None:
    config = tmp_path / "incident.yaml"
    config.write_text("channels:\n  pd: {type: pagerduty, routing_key: k, sync: true}\n")
    result = run_cli(["-c", str(config), "--db", str(tmp_path / "s.db"), "sync"], cwd=tmp_path)
    assert result.code == 78, result.stderr
    assert "channels.pd.api_token" in result.stderr
    assert "Traceback" not in result.stderr


def test_incident_sync_as_cron_runs_it(tmp_path: Path) -> None:
    token_file = tmp_path / "pd-token"
    token_file.write_text(TOKEN + "\n")
    with pagerduty(tmp_path) as (setup, fake):
        text = setup.config_path.read_text().replace(
            f"api_token: '{TOKEN}'", f"api_token_file: {token_file}"
        )
        setup.config_path.write_text(text)
        argv = ["-c", str(setup.config_path), "--db", backend.locate(setup.db_path)]
        fake.answer = lambda request: ok(
            pd_incident("acknowledged", acknowledgements=[{"acknowledger": {"summary": "Ada"}}])
        )
        done = run_cli([*argv, "sync"], cwd=tmp_path)
        fake.answer = lambda request: (503, {}, f"down {request.headers}".encode())
        down = run_cli([*argv, "sync"], cwd=tmp_path)
        shown = run_cli([*argv, "show", "1", "--json"], cwd=tmp_path)
        config = run_cli([*argv, "config", "show"], cwd=tmp_path)

    assert (done.code, done.stdout, done.stderr) == (0, "", "")
    assert fake.reads[0].headers["Authorization"] == f"Token token={TOKEN}"
    assert json.loads(shown.stdout)["acknowledged_by"] == "pagerduty:Ada"
    assert down.code == 75
    assert down.stderr == "incident: sync: channel pd: cannot read PagerDuty incidents: HTTP 503\n"
    everything = "".join(r.stdout + r.stderr for r in (done, down, shown, config))
    assert "s3cr3t" not in everything + dump_db(setup.db_path)


def test_the_token_can_come_from_pagerduty_api_token(tmp_path: Path) -> None:
    with pagerduty(tmp_path) as (setup, fake):
        text = setup.config_path.read_text().replace(f"api_token: '{TOKEN}', ", "")
        setup.config_path.write_text(text)
        argv = ["-c", str(setup.config_path), "--db", backend.locate(setup.db_path)]
        done = run_cli([*argv, "sync"], cwd=tmp_path, env={"PAGERDUTY_API_TOKEN": TOKEN})
        shown = run_cli([*argv, "config", "show"], cwd=tmp_path, env={"PAGERDUTY_API_TOKEN": TOKEN})
        unset = run_cli([*argv, "sync"], cwd=tmp_path)
    assert done.code == 0, done.stderr
    assert fake.reads[0].headers["Authorization"] == f"Token token={TOKEN}"
    assert "s3cr3t" not in shown.stdout + shown.stderr and "api_token" in shown.stdout
    assert unset.code == 78 and "PAGERDUTY_API_TOKEN" in unset.stderr
