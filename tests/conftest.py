"""Shared fixtures: every test runs with its config, DB and environment inside tmp_path."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Variables of the user's environment that would change what `incident` does.
_INCIDENT_VARS = (
    "INCIDENT_CONFIG",
    "INCIDENT_DB",
    "PROMETHEUS_URL",
    "SLACK_WEBHOOK_URL",
    "PAGERDUTY_API_KEY",
    "STATUSPAGE_API_KEY",
    "STATUSPAGE_PAGE_ID",
    "SMTP_HOST",
    "ALERT_EMAIL_TO",
    "INCIDENT_WEBHOOK_URL",
    "GRAFANA_URL",
    "INCIDENT_AUTO_RESOLUTION_ENABLED",
    "AUTO_RECOVERY_ENABLED",
    "SERVICE_RECOVERY_TIMEOUT_MINUTES",
    "AUTO_BLOCK_SUSPICIOUS_IPS",
    "SECURITY_INCIDENT_AUTO_ESCALATE",
    "ANOMALY_WINDOW",
    "ANOMALY_FAIL_THRESHOLD",
    "ANOMALY_P95_FACTOR",
)


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in _INCIDENT_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NO_COLOR", "1")
    yield


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("INCIDENT_SKIP_INTEGRATION") == "1":
        skip = pytest.mark.skip(reason="INCIDENT_SKIP_INTEGRATION=1")
        for item in items:
            if "integration" in item.keywords:
                item.add_marker(skip)
