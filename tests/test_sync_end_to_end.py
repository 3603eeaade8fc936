"""End to end as cron runs it: a real Alertmanager as the source, `incident run` ticks, and
local fakes of PagerDuty (Events + REST) and Slack (Web API). An ack in PagerDuty, then a
resolve there while the alert still fires."""

from __future__ import annotations

import json
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.support.binaries import ALERTMANAGER, run_cli, start_alertmanager
from tests.support.notify import Received, Reply, receiver
from tests.support.slack import FakeSlack

TOKEN = "u+s3cr3tRestToken"


def fire_in_alertmanager(url: str) -> None:
    now = datetime.now(UTC)
    alert = {
        "labels": {"alertname": "BackendServiceDown", "service": "backend", "severity": "critical"},
        "annotations": {"summary": "backend is down"},
        "startsAt": (now - timedelta(minutes=1)).isoformat(),
        "endsAt": (now + timedelta(hours=1)).isoformat(),
    }
    request = urllib.request.Request(
        url + "/api/v2/alerts",
        data=json.dumps([alert]).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200


@pytest.mark.skipif(not Path(ALERTMANAGER).exists(), reason="no alertmanager binary")
def test_acks_and_resolves_in_pagerduty_reach_a_real_tick(tmp_path: Path) -> None:
    state = {"status": "triggered"}
    events: list[str] = []

    def pagerduty(request: Received) -> Reply:
        if request.path == "/v2/enqueue":
            events.append(request.body["event_action"])
            return 202, {}, b'{"status":"success"}'
        incident = {"id": "P1", "type": "incident", "status": state["status"]}
        if state["status"] == "acknowledged":
            incident["acknowledgements"] = [{"acknowledger": {"summary": "Ada"}}]
        if state["status"] == "resolved":
            incident["last_status_change_by"] = {"summary": "Bo"}
        body = {"incidents": [incident], "limit": 1, "offset": 0, "more": False}
        return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()

    am = start_alertmanager(tmp_path / "am")
    slack = FakeSlack()
    try:
        fire_in_alertmanager(am.url)
        with receiver(pagerduty) as pd, receiver(slack) as sl:
            config = tmp_path / "incident.yaml"
            config.write_text(
                "sources:\n"
                f"  am: {{type: alertmanager, url: '{am.url}', timeout: 5s}}\n"
                "defaults: {notify: [pd, sl]}\n"
                "rules:\n"
                "  - {name: backend-down, match: {alertname: BackendServiceDown},"
                " group_by: [alertname, service]}\n"
                "channels:\n"
                f"  pd: {{type: pagerduty, routing_key: R0UTING, url: '{pd.url}/v2/enqueue',"
                f" api_token: '{TOKEN}', sync: true, api_url: '{pd.url}'}}\n"
                "  sl: {type: slack, bot_token: xoxb-s3cr3t, channel: '#oncall',"
                f" api_url: '{sl.url}/api'}}\n"
            )
            argv = ["-c", str(config), "--db", str(tmp_path / "state.db")]

            def tick() -> tuple[int, str]:
                done = run_cli([*argv, "run"], cwd=tmp_path)
                return done.code, done.stdout + done.stderr

            def show() -> dict[str, object]:
                return dict(
                    json.loads(run_cli([*argv, "show", "1", "--json"], cwd=tmp_path).stdout)
                )

            assert tick() == (0, "")
            assert events == ["trigger"] and slack.methods() == ["chat.postMessage"]

            state["status"] = "acknowledged"
            assert tick() == (0, "")
            shown = show()
            assert (shown["status"], shown["acknowledged_by"]) == ("acknowledged", "pagerduty:Ada")
            # The same tick told the channels: PagerDuty's own ack event, Slack's thread.
            assert events == ["trigger", "acknowledge"]
            assert slack.methods()[1:] == ["chat.update", "chat.postMessage"]

            state["status"] = "resolved"
            assert tick() == (0, "")
            assert tick() == (0, "")  # the alert still fires in Alertmanager: held, no reopen
            shown = show()
            assert (shown["status"], shown["resolution"]) == ("resolved", "manual")
            listed = run_cli([*argv, "list", "--status", "all", "--json"], cwd=tmp_path)
            assert len(json.loads(listed.stdout)) == 1
            assert events == ["trigger", "acknowledge", "resolve"]
    finally:
        am.stop()
