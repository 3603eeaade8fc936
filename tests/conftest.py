"""Shared fixtures: every test runs with its config, DB and environment inside tmp_path."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from incident_cli.config import ENV_VARIABLES

# Variables of the user's environment that would change what `incident` does: the behaviour
# overrides (config.ENV_VARIABLES) and the locations and secrets the built-in defaults read.
_INCIDENT_VARS = (
    *ENV_VARIABLES,
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
