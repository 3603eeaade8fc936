"""Small builders for the handler and recover tests: a config file, a DB, firing alerts, scripts."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from incident_cli.config.load import load_config
from incident_cli.config.model import Config
from incident_cli.intake.sources import fingerprint
from incident_cli.lifecycle.poll import PollResult, apply_poll
from incident_cli.models import Alert
from incident_cli.store.connection import open_db
from incident_cli.store.incidents import get_incident, incident_detail
from tests.support import backend

T0 = 1_800_000_000.0  # an injected clock: every test starts here


def write_config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "incident.yaml"
    path.write_text(
        "sources:\n  prometheus: {type: prometheus, url: 'http://127.0.0.1:9'}\n"
        "incidents: {resolve_after: 0s}\n" + textwrap.dedent(body)
    )
    return path


def load(path: Path, env: Mapping[str, str] | None = None) -> Config:
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(path.parent)}
    return load_config(path, {**base, **(env or {})})


def db_for(tmp_path: Path) -> Database:
    return open_db(backend.locate(tmp_path / "state.db"))


def alert(**labels: str) -> Alert:
    return Alert(
        source="prometheus",
        fingerprint=fingerprint(labels),
        labels=labels,
        annotations={},
        state="firing",
        starts_at=T0 - 60,
    )


def fire(db: Database, config: Config, now: float, *alerts: Alert) -> PollResult:
    """One poll in which exactly these alerts fire."""
    return apply_poll(db, config, {"prometheus": list(alerts)}, {}, now)


def script(tmp_path: Path, name: str, body: str) -> Path:
    """An executable /bin/sh script in tmp_path."""
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return path


def actions(db: Database, incident_id: int = 1) -> list[dict[str, Any]]:
    incident = get_incident(db, incident_id)
    assert incident is not None
    result: list[dict[str, Any]] = incident_detail(db, incident)["actions"]
    return result


def timeline(db: Database, incident_id: int = 1) -> list[dict[str, Any]]:
    incident = get_incident(db, incident_id)
    assert incident is not None
    result: list[dict[str, Any]] = incident_detail(db, incident)["timeline"]
    return result


def kinds(db: Database, incident_id: int = 1) -> list[str]:
    return [event["kind"] for event in timeline(db, incident_id)]
