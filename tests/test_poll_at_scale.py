"""A big poll writes its rows in bulk, yet every row, id and order is what one-by-one writes give."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from incident_cli.config.load import load_config
from incident_cli.config.model import Config
from incident_cli.store.database import Database
from tests.support.builders import T0, fire
from tests.support.builders import alert as build_alert

pytestmark = pytest.mark.usefixtures("both_backends")

alert = partial(build_alert, source="prom")  # this module's one source


HANDLERS = """
from incident_cli.models import ActionPlan

def restart(incident, alert, rule):
    return [ActionPlan(kind="command", command=("systemctl", "restart", "x"))]

def broken(incident, alert, rule):
    raise RuntimeError("handler bug")
"""

CONFIG = """
sources:
  prom: {type: prometheus, url: "http://127.0.0.1:9"}
incidents: {storm: {max_new_per_tick: 2}}
channels:
  slack: {type: slack, webhook_url: "https://hooks.example/slack"}
defaults: {notify: [slack]}
recovery: {enabled: false}
rules:
  - {name: restart, match: {alertname: Restart}, handler: "bulk_handlers:restart"}
  - {name: broken, match: {alertname: Broken}, handler: "bulk_handlers:broken"}
"""


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Config]:
    (tmp_path / "bulk_handlers.py").write_text(HANDLERS)
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "incident.yaml"
    path.write_text(CONFIG)
    yield load_config(path, {})
    sys.modules.pop("bulk_handlers", None)


def rows(db: Database, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in db.conn.execute(sql)]


def test_a_storm_gives_ids_and_timeline_order_as_one_by_one_inserts_would(
    db: Database, config: Config
) -> None:
    fire(db, config, T0, alert("Disk", instance="old"))
    result = fire(
        db,
        config,
        T0 + 60,
        alert("Disk", instance="old"),
        alert("Disk", instance="a"),
        alert("Restart", instance="b"),
        alert("Broken", instance="c"),
        alert("Disk", instance="d", state="suppressed"),
        alert("Disk", instance="e"),
    )
    assert result.storm and result.opened == [2, 3, 4, 5]
    assert rows(db, "SELECT incident_id, kind FROM timeline ORDER BY id") == [
        (1, "opened"),
        (1, "alert_firing"),
        (2, "opened"),
        (2, "alert_firing"),
        (3, "opened"),
        (3, "action_planned"),  # written between the batched rows, in its place
        (3, "alert_firing"),
        (4, "opened"),
        (4, "note"),  # the broken handler, recorded
        (4, "alert_firing"),
        (5, "opened"),
        (5, "alert_firing"),
    ]
    assert rows(db, "SELECT id, incident_id, state FROM alerts ORDER BY id") == [
        (1, 1, "firing"),
        (2, 2, "firing"),
        (3, 3, "firing"),
        (4, 4, "firing"),
        (5, 5, "firing"),
    ]
    # The suppressed alert opened nothing; every incident is open, seen now, in one transaction
    # with its action (skipped: recovery is off) and the storm summary.
    assert rows(db, "SELECT id, status, last_seen_at, absent_polls FROM incidents ORDER BY id") == [
        (i, "open", T0 + 60, 0) for i in range(1, 6)
    ]
    assert rows(db, "SELECT incident_id, kind, status FROM actions") == [(3, "command", "skipped")]
    assert rows(db, "SELECT incident_id, event FROM notifications ORDER BY id") == [
        (1, "firing"),
        (None, "storm"),
    ]


def test_new_ids_follow_the_highest_id_left_after_a_delete(db: Database, config: Config) -> None:
    fire(db, config, T0, alert("Disk", instance="a"), alert("Disk", instance="b"))
    with db.conn:
        db.conn.execute("DELETE FROM incidents WHERE id = 2")
    result = fire(
        db,
        config,
        T0 + 60,
        alert("Disk", instance="a"),
        alert("Disk", instance="c"),
        alert("Disk", instance="d"),
    )
    assert result.opened == [2, 3]
    assert rows(db, "SELECT id, title FROM incidents ORDER BY id") == [
        (1, "Disk: a"),
        (2, "Disk: c"),
        (3, "Disk: d"),
    ]


def test_the_same_alert_twice_in_one_payload_is_one_incident_with_one_alert_row(
    db: Database, config: Config
) -> None:
    result = fire(
        db,
        config,
        T0,
        alert("Disk", instance="a"),
        alert("Disk", instance="a"),
        alert("Disk", instance="b"),
    )
    assert result.opened == [1, 2]
    assert rows(db, "SELECT incident_id, state FROM alerts ORDER BY id") == [
        (1, "firing"),
        (2, "firing"),
    ]
    assert rows(db, "SELECT incident_id, kind FROM timeline ORDER BY id") == [
        (1, "opened"),
        (1, "alert_firing"),
        (2, "opened"),
        (2, "alert_firing"),
    ]


def test_a_storm_next_to_a_reopen_and_a_clear_keeps_every_row_in_order(
    db: Database, config: Config
) -> None:
    fire(db, config, T0, alert("Disk", instance="a"), alert("Disk", instance="b"))
    fire(db, config, T0 + 60, alert("Disk", instance="b"))
    assert fire(db, config, T0 + 400, alert("Disk", instance="b")).resolved == [1]  # a cleared
    (before,) = db.conn.execute("SELECT max(id) FROM timeline").fetchone()
    # a fires again within reopen_within (a reopen between new incidents); b is gone.
    result = fire(
        db,
        config,
        T0 + 460,
        alert("Disk", instance="x"),
        alert("Disk", instance="a"),
        alert("Disk", instance="y"),
    )
    assert result.reopened == [1] and result.opened == [3, 4]
    assert rows(db, f"SELECT incident_id, kind FROM timeline WHERE id > {before} ORDER BY id") == [
        (3, "opened"),
        (3, "alert_firing"),
        (1, "reopened"),
        (1, "alert_firing"),
        (4, "opened"),
        (4, "alert_firing"),
        (2, "alert_cleared"),
    ]
    assert rows(db, "SELECT id, status, last_seen_at, absent_polls FROM incidents ORDER BY id") == [
        (1, "open", T0 + 460, 0),
        (2, "open", T0 + 400, 1),
        (3, "open", T0 + 460, 0),
        (4, "open", T0 + 460, 0),
    ]


def test_a_storm_larger_than_one_insert_keeps_every_row_and_count(
    db: Database, config: Config
) -> None:
    alerts = [
        alert("Disk", instance=f"host-{i:04}") for i in range(1201)
    ]  # more than one multi-row INSERT
    result = fire(db, config, T0, *alerts)
    assert result.opened == list(range(1, 1202))
    assert rows(db, "SELECT id, title FROM incidents ORDER BY id") == [
        (i + 1, f"Disk: host-{i:04}") for i in range(1201)
    ]
    assert rows(db, "SELECT incident_id, kind FROM timeline ORDER BY id") == [
        (i, kind) for i in range(1, 1202) for kind in ("opened", "alert_firing")
    ]
    assert rows(db, "SELECT id, incident_id FROM alerts ORDER BY id") == [
        (i, i) for i in range(1, 1202)
    ]
    assert rows(db, "SELECT name, severity, value FROM counters") == [("opened", "warning", 1201)]
