"""`incident notify` through the CLI: dry run, --channel, --json, exit codes, list/show."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import responses
from typer.testing import CliRunner, Result

from incident_cli.cli import app
from incident_cli.cli.context import Env
from tests.support import backend
from tests.support.notify import T0, Setup, alert, dump_db, make_setup, rows

pytestmark = pytest.mark.usefixtures("both_backends")

SLACK = "https://hooks.slack.com/services/T0/B0/slack-SECRET-path"
PD_KEY = "pd-ROUTING-key-0123456789"
SP_KEY = "sp-API-key-0123456789"


def _setup(tmp_path: Path) -> Setup:
    return make_setup(
        tmp_path,
        {
            "slack": f'{{type: slack, webhook_url: "{SLACK}"}}',
            "pd": f"{{type: pagerduty, routing_key: {PD_KEY}}}",
            "sp": f"{{type: statuspage, page_id: p1, api_key: {SP_KEY}}}",
        },
    )


def run(setup: Setup, *args: str, now: float = T0 + 5) -> Result:
    argv = ["--config", str(setup.config_path), "--db", backend.locate(setup.db_path), *args]
    return CliRunner().invoke(
        app, argv, obj=Env(environ={}, clock=lambda: now), env={"COLUMNS": "250"}
    )


def test_dry_run_prints_each_payload_with_secrets_masked_and_sends_nothing(
    tmp_path: Path,
) -> None:
    setup = _setup(tmp_path)
    setup.fire([alert(service="backend")])
    before = dump_db(setup.db_path)

    with responses.RequestsMock():  # any HTTP call would fail the test
        result = run(setup, "notify", "--dry-run")

    assert result.exit_code == 0, result.output
    out = result.stdout
    assert (
        "would send notification 1 to slack (firing, incident 1): POST https://hooks.slack.com/***"
        in out
    )
    assert (
        "would send notification 2 to pd (firing, incident 1): POST https://events.pagerduty.com/v2/enqueue"
        in out
    )
    assert '"routing_key": "***"' in out
    assert "Authorization: OAuth ***" in out
    assert '"event_action": "trigger"' in out
    for secret in (SLACK, "slack-SECRET-path", PD_KEY, SP_KEY):
        assert secret not in out
        assert secret not in result.stderr
    assert dump_db(setup.db_path) == before


def test_dry_run_json_lists_the_masked_requests(tmp_path: Path) -> None:
    setup = _setup(tmp_path)
    setup.fire([alert(service="backend")])

    result = run(setup, "notify", "--dry-run", "--json", "--channel", "pd")

    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["dry_run"] is True
    (item,) = data["notifications"]
    assert {k: item[k] for k in ("id", "channel", "event", "incident_id", "due", "method")} == {
        "id": 2,
        "channel": "pd",
        "event": "firing",
        "incident_id": 1,
        "due": True,
        "method": "POST",
    }
    assert item["body"]["routing_key"] == "***"


@responses.activate
def test_notify_json_reports_each_row_and_exits_0(tmp_path: Path) -> None:
    setup = _setup(tmp_path)
    setup.fire([alert(service="backend")])
    responses.post(SLACK, body="ok")

    result = run(setup, "notify", "--json", "--channel", "slack")

    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["sent"], data["retrying"], data["dead"], data["dry_run"]) == (1, 0, 0, False)
    assert data["notifications"] == [
        {
            "id": 1,
            "channel": "slack",
            "event": "firing",
            "incident_id": 1,
            "status": "sent",
            "attempts": 1,
            "error": None,
            "next_attempt_at": None,
        }
    ]
    assert [r["status"] for r in rows(setup)] == ["sent", "pending", "pending"]
    assert result.stderr == ""


@responses.activate
def test_it_is_silent_on_success_and_exits_1_naming_a_dead_letter(tmp_path: Path) -> None:
    setup = _setup(tmp_path)
    setup.fire([alert(service="backend")])
    responses.post(SLACK, body="ok")
    responses.post("https://events.pagerduty.com/v2/enqueue", status=400, body="bad key")
    responses.post("https://api.statuspage.io/v1/pages/p1/incidents", status=201, json={"id": "s"})

    result = run(setup, "notify")

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        "incident: notification 2 to pd (firing, incident 1) is dead:"
        " pagerduty answered HTTP 400: bad key\n"
    )
    heartbeat = rows(setup, "SELECT * FROM heartbeats WHERE command = 'notify'")
    assert heartbeat[0]["last_exit"] == 1


@responses.activate
def test_a_retry_is_not_a_failure_of_the_tick(tmp_path: Path) -> None:
    setup = _setup(tmp_path)
    setup.fire([alert(service="backend")])
    responses.post(SLACK, status=503)

    result = run(setup, "-v", "notify", "--channel", "slack")

    assert result.exit_code == 0
    assert "retry: slack answered HTTP 503" in result.stdout
    assert "notify: sent 0, retrying 1, dead 0" in result.stdout


def test_an_unknown_channel_is_a_usage_error(tmp_path: Path) -> None:
    result = run(_setup(tmp_path), "notify", "--channel", "nope")
    assert result.exit_code == 2
    assert "no channel named 'nope' (channels: slack, pd, sp)" in result.stderr


@responses.activate
def test_list_and_show_name_pending_and_dead_notifications(tmp_path: Path) -> None:
    setup = _setup(tmp_path)
    setup.fire([alert(service="backend")])
    responses.post(SLACK, status=404, body="no_service")

    run(setup, "notify", "--channel", "slack")
    listing = run(setup, "list")
    shown = run(setup, "show", "1")
    detail: dict[str, Any] = json.loads(run(setup, "show", "1", "--json").stdout)

    assert "2 notification(s) pending" in listing.stdout
    assert "1 notification(s) DEAD" in listing.stdout
    assert "slack answered HTTP 404: no_service" in shown.stdout
    assert detail["notifications"][0] == {
        "id": 1,
        "channel": "slack",
        "event": "firing",
        "status": "dead",
        "attempts": 1,
        "created_at": "2027-01-15T08:00:00Z",
        "sent_at": None,
        "error": "slack answered HTTP 404: no_service",
    }
    assert [e["kind"] for e in detail["timeline"]][-1] == "notification_failed"
