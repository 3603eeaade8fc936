"""The handler and recover tests' setups: their config, a DB, scripts, what an incident did.
Alerts, polls and the clock are tests/support/builders.py's (imported from here too)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from incident_cli.store.connection import open_db
from incident_cli.store.incidents import get_incident, incident_detail
from tests.support import backend
from tests.support.builders import T0, alert, fire, load, write_config

__all__ = ["T0", "alert", "db_for", "fire", "load", "recovery_config", "runs", "script"]


def recovery_config(tmp_path: Path, body: str) -> Path:
    """The recover tests' config: one Prometheus source nothing polls, incidents resolving at
    once, and `body` (dedented)."""
    return write_config(
        tmp_path,
        "sources:\n  prometheus: {type: prometheus, url: 'http://127.0.0.1:9'}\n"
        "incidents: {resolve_after: 0s}\n" + textwrap.dedent(body),
    )


def db_for(tmp_path: Path) -> Database:
    return open_db(backend.locate(tmp_path / "state.db"))


def runs(tmp_path: Path) -> list[str]:
    """What the scripts the tests run logged, one line a run, in tmp_path/runs.log."""
    log = tmp_path / "runs.log"
    return log.read_text().splitlines() if log.exists() else []


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
