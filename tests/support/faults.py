"""The fault runs' pipeline (tests/faults and bench/faults.py): a real Alertmanager as the
source, a webhook channel, a recovery command that appends its attempt number to a file."""

from __future__ import annotations

import json
import urllib.request
from typing import Any


def pipeline_config(am_url: str, hook_url: str, service: str, command_sleep: float) -> str:
    """The rule file: alerts `BackendDown{service=...}` open an incident, notify the webhook
    and run the recovery command (which writes $INCIDENT_ATTEMPT to attempts.log)."""
    return f"""
sources:
  am: {{type: alertmanager, url: "{am_url}", timeout: 5s}}
channels:
  hook: {{type: webhook, url: "{hook_url}/hook", timeout: 2s}}
incidents: {{resolve_after: 1s}}
defaults: {{notify: [hook]}}
rules:
  - name: backend
    match: {{alertname: BackendDown, service: "{service}"}}
    handler: service_down
    recovery:
      commands: [["sh", "-c", "echo $INCIDENT_ATTEMPT >> attempts.log; sleep {command_sleep}"]]
      timeout: 10s
"""


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
