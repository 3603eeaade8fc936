"""The fault runs' pipeline (tests/faults and bench/faults.py): a real Alertmanager as the
source, a webhook channel, a recovery command that appends its attempt number to a file."""

from __future__ import annotations

import json
import sqlite3
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.binaries import start_alertmanager
from tests.support.notify import Receiver, receiver


def pipeline_config(
    am_url: str,
    hook_url: str,
    service: str,
    command_sleep: float,
    *,
    pagerduty_url: str | None = None,
    record: str = "$INCIDENT_ATTEMPT",
) -> str:
    """The rule file: alerts `BackendDown{service=...}` (a "~regex" matches several) open an
    incident each, notify the webhook (and PagerDuty at `pagerduty_url`, when given) and run
    the recovery command, which appends `record` ($INCIDENT_ATTEMPT) to attempts.log."""
    pagerduty = (
        f'  pd: {{type: pagerduty, url: "{pagerduty_url}/v2/enqueue",'
        " routing_key: failover-routing-key, timeout: 2s}\n"
        if pagerduty_url
        else ""
    )
    return f"""
sources:
  am: {{type: alertmanager, url: "{am_url}", timeout: 5s}}
channels:
  hook: {{type: webhook, url: "{hook_url}/hook", timeout: 2s}}
{pagerduty}incidents: {{resolve_after: 1s}}
defaults: {{notify: [hook{", pd" if pagerduty_url else ""}]}}
rules:
  - name: backend
    match: {{alertname: BackendDown, service: "{service}"}}
    handler: service_down
    recovery:
      commands: [["sh", "-c", "echo {record} >> attempts.log; sleep {command_sleep}"]]
      timeout: 10s
"""


@contextmanager
def pipeline(workdir: Path, command_sleep: float = 1.0) -> Iterator[tuple[Receiver, str]]:
    """A real Alertmanager with `BackendDown{service=backend}` firing, a webhook receiver, and
    the rule file written to workdir/incident.yaml: yields (the receiver, Alertmanager's URL)."""
    am = start_alertmanager(workdir / "am")
    try:
        with receiver() as hook:
            post_alert(am.url, "backend")
            (workdir / "incident.yaml").write_text(
                pipeline_config(am.url, hook.url, "backend", command_sleep)
            )
            yield hook, am.url
    finally:
        am.stop()


def post_alert(am_url: str, service: str, resolved: bool = False) -> None:
    """Fire (or resolve) `BackendDown{service=...}` through Alertmanager's API."""
    alert: dict[str, Any] = {
        "labels": {"alertname": "BackendDown", "service": service, "severity": "critical"}
    }
    if resolved:
        alert["endsAt"] = "2000-01-01T00:00:00Z"
    request = urllib.request.Request(
        am_url + "/api/v2/alerts",
        json.dumps([alert]).encode(),
        {"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200


def age_leases(db: Path) -> None:
    """Move every lease into the past: what a dead (or stalled) tick's leases are once they
    have run out (30 s for a notification, the command's timeout + 60 s for an action), without
    waiting for them."""
    if not db.exists():
        return  # killed before it created the DB
    conn = sqlite3.connect(db, timeout=30)
    try:
        with conn:
            conn.execute("UPDATE notifications SET lease_until = 1 WHERE lease_until IS NOT NULL")
            conn.execute("UPDATE actions SET lease_until = 1 WHERE lease_until IS NOT NULL")
    except sqlite3.OperationalError as exc:
        if "no such table" not in str(exc):
            raise  # killed before its schema was committed: nothing is leased
    finally:
        conn.close()
