"""The incident lifecycle with an injected clock: open, update, resolve, reopen, flapping, storm."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pytest
from sqlite_utils import Database

from incident_cli.config.load import load_config
from incident_cli.config.model import Config
from incident_cli.errors import IncidentError
from incident_cli.lifecycle.manual import acknowledge, resolve_by_hand
from incident_cli.store.incidents import get_incident, list_incidents
from tests.support.builders import T0, fire
from tests.support.builders import alert as build_alert

# This module's sources are `prom` and `am`.
alert = partial(build_alert, source="prom")


pytestmark = pytest.mark.usefixtures("both_backends")  # `db` on SQLite and PostgreSQL

CONFIG = """
sources:
  prom: {type: prometheus, url: "http://127.0.0.1:9"}
  am: {type: alertmanager, url: "http://127.0.0.1:9"}
incidents:
  resolve_after: 5m
  reopen_within: 15m
  flapping: {changes: 4, window: 1h}
  storm: {max_new_per_tick: 3}
channels:
  slack: {type: slack, webhook_url: "https://hooks.example/slack"}
  pd: {type: pagerduty, routing_key: "rk-0123456789", min_severity: critical}
defaults: {notify: [slack, pd]}
rules:
  - {name: backend-down, match: {alertname: BackendServiceDown}, severity: critical,
     group_by: [alertname, service]}
"""


@pytest.fixture
def config(tmp_path: Path) -> Config:
    path = tmp_path / "incident.yaml"
    path.write_text(CONFIG)
    return load_config(path, {})


def timeline_kinds(db: Database, incident_id: int) -> list[str]:
    return [
        r["kind"]
        for r in db.query(
            "SELECT kind FROM timeline WHERE incident_id = ? ORDER BY id", [incident_id]
        )
    ]


def notifications(db: Database) -> list[tuple[int | None, str, str]]:
    return [
        (r["incident_id"], r["channel"], r["event"])
        for r in db.query("SELECT incident_id, channel, event FROM notifications ORDER BY id")
    ]


def test_a_firing_alert_opens_one_incident_with_its_times_and_notifications(
    db: Database, config: Config
) -> None:
    result = fire(
        db,
        config,
        T0,
        alert(service="backend", instance="a"),
        alert(service="backend", instance="b"),
    )
    assert len(result.opened) == 1  # grouped by alertname+service
    incident = get_incident(db, result.opened[0])
    assert incident is not None
    assert incident.key == "backend-down:alertname=BackendServiceDown,service=backend"
    assert incident.title == "BackendServiceDown: backend"
    assert (incident.status, incident.severity, incident.source) == ("open", "critical", "prom")
    assert incident.started_at == T0 - 60 and incident.opened_at == T0
    assert incident.to_json()["opened_at"] == "2027-01-15T08:00:00Z"
    assert timeline_kinds(db, incident.id) == ["opened", "alert_firing", "alert_firing"]
    assert notifications(db) == [(incident.id, "slack", "firing"), (incident.id, "pd", "firing")]


def test_pending_alerts_never_open_and_suppressed_ones_open_nothing(
    db: Database, config: Config
) -> None:
    result = fire(
        db,
        config,
        T0,
        alert("Slow", state="pending"),
        alert("Muted", state="suppressed", source="am"),
    )
    assert result.opened == []
    assert list_incidents(db, None, None) == []


def test_a_second_identical_poll_changes_nothing(db: Database, config: Config) -> None:
    a = alert(service="backend")
    first = fire(db, config, T0, a)
    snapshot = (list(db.query("SELECT * FROM timeline")), notifications(db))
    second = fire(db, config, T0 + 60, a)
    assert second.opened == [] and second.updated == 1
    assert (list(db.query("SELECT * FROM timeline")), notifications(db)) == snapshot
    assert get_incident(db, first.opened[0]).last_seen_at == T0 + 60  # type: ignore[union-attr]


def test_it_resolves_only_after_resolve_after_and_two_polls_without_the_alert(
    db: Database, config: Config
) -> None:
    incident_id = fire(db, config, T0, alert(service="backend")).opened[0]
    fire(db, config, T0 + 400)  # gone for 400s, but only one poll
    assert get_incident(db, incident_id).status == "open"  # type: ignore[union-attr]
    fresh = fire(db, config, T0 + 30, alert(service="backend"))  # back again: counters reset
    assert fresh.updated == 1
    fire(db, config, T0 + 60)
    fire(db, config, T0 + 120)  # two polls, but only 120s absent
    assert get_incident(db, incident_id).status == "open"  # type: ignore[union-attr]
    result = fire(db, config, T0 + 400)
    assert result.resolved == [incident_id]
    incident = get_incident(db, incident_id)
    assert incident is not None and (incident.status, incident.resolution) == ("resolved", "auto")
    assert incident.resolved_at == T0 + 400
    assert sorted(notifications(db)[-2:]) == [
        (incident_id, "pd", "resolved"),
        (incident_id, "slack", "resolved"),
    ]


def test_a_failed_source_never_resolves_its_incidents(db: Database, config: Config) -> None:
    incident_id = fire(db, config, T0, alert(service="backend")).opened[0]
    for minute in range(1, 10):
        fire(db, config, T0 + minute * 60, failed=("prom",))
    assert get_incident(db, incident_id).status == "open"  # type: ignore[union-attr]
    unreachable = [i for i in list_incidents(db, None, None) if i.rule == "source_unreachable"]
    assert len(unreachable) == 1 and unreachable[0].labels["source"] == "prom"
    status = next(db.query("SELECT * FROM source_status WHERE name = 'prom'"))
    assert status["consecutive_failures"] == 9
    # The source answers again: its own incident resolves.
    result = fire(db, config, T0 + 700, alert(service="backend"))
    assert unreachable[0].id in result.resolved


def test_a_suppressed_alert_keeps_an_open_incident_open(db: Database, config: Config) -> None:
    incident_id = fire(db, config, T0, alert(service="backend", source="am")).opened[0]
    for minute in range(1, 20):
        fire(
            db, config, T0 + minute * 60, alert(service="backend", source="am", state="suppressed")
        )
    assert get_incident(db, incident_id).status == "open"  # type: ignore[union-attr]
    # No new notification for the silenced alert.
    assert notifications(db) == [(incident_id, "slack", "firing"), (incident_id, "pd", "firing")]


def test_a_return_within_reopen_within_reopens_the_same_incident(
    db: Database, config: Config
) -> None:
    a = alert(service="backend")
    incident_id = fire(db, config, T0, a).opened[0]
    fire(db, config, T0 + 300)
    fire(db, config, T0 + 360)
    assert get_incident(db, incident_id).status == "resolved"  # type: ignore[union-attr]
    result = fire(db, config, T0 + 600, a)
    assert result.reopened == [incident_id] and result.opened == []
    incident = get_incident(db, incident_id)
    assert incident is not None and incident.status == "open" and incident.reopen_count == 1
    assert incident.resolved_at is None and incident.resolution is None
    # After reopen_within, the same alert opens a new incident.
    fire(db, config, T0 + 900)
    fire(db, config, T0 + 960)
    late = fire(db, config, T0 + 960 + 16 * 60, a)
    assert late.opened and late.opened[0] != incident_id


def test_flapping_holds_notifications_until_it_settles(db: Database, config: Config) -> None:
    a = alert(service="backend")
    incident_id = fire(db, config, T0, a).opened[0]
    now = T0
    for _ in range(2):  # resolve, reopen, resolve, reopen = 4 changes
        fire(db, config, now + 300)
        fire(db, config, now + 360)
        now += 420
        fire(db, config, now, a)
    incident = get_incident(db, incident_id)
    assert incident is not None and incident.flapping is True
    assert "flapping_started" in timeline_kinds(db, incident_id)
    count = len(notifications(db))
    fire(db, config, now + 300)
    fire(db, config, now + 360)  # resolves while flapping: nothing new is sent
    assert len(notifications(db)) == count
    fire(db, config, now + 360 + 3601)  # an hour with no change: flapping stops
    incident = get_incident(db, incident_id)
    assert incident is not None and incident.flapping is False
    assert "flapping_stopped" in timeline_kinds(db, incident_id)
    assert notifications(db)[-1][2] == "resolved"  # channels are brought back to the real state


def test_a_storm_sends_one_summary_per_channel(db: Database, config: Config) -> None:
    alerts = [alert("Disk", instance=f"host{i}", severity="critical") for i in range(5)]
    result = fire(db, config, T0, *alerts)
    assert len(result.opened) == 5 and result.storm
    rows = list(db.query("SELECT incident_id, channel, event, message FROM notifications"))
    assert [(r["incident_id"], r["channel"], r["event"]) for r in rows] == [
        (None, "slack", "storm"),
        (None, "pd", "storm"),
    ]
    assert json.loads(rows[0]["message"])["count"] == 5


def test_min_severity_keeps_warnings_from_pagerduty(db: Database, config: Config) -> None:
    incident_id = fire(db, config, T0, alert("Disk", severity="warning")).opened[0]
    assert notifications(db) == [(incident_id, "slack", "firing")]


def test_ack_and_resolve_by_hand_are_recorded_and_notified_where_firing_went(
    db: Database, config: Config
) -> None:
    incident_id = fire(db, config, T0, alert(service="backend")).opened[0]
    acknowledge(db, config, incident_id, "alice", "on it", T0 + 120)
    with pytest.raises(IncidentError):
        acknowledge(db, config, incident_id, "bob", None, T0 + 130)
    resolve_by_hand(db, config, incident_id, "alice", "restarted", False, T0 + 600)
    incident = get_incident(db, incident_id)
    assert incident is not None
    assert (incident.status, incident.resolution, incident.acknowledged_by) == (
        "resolved",
        "manual",
        "alice",
    )
    assert incident.acknowledged_at == T0 + 120
    rows = list(
        db.query(
            "SELECT kind, actor, message FROM timeline WHERE incident_id = ? ORDER BY id",
            [incident_id],
        )
    )
    assert ("acknowledged", "alice", "acknowledged by alice") in [
        (r["kind"], r["actor"], r["message"]) for r in rows
    ]
    assert ("note", "alice", "on it") in [(r["kind"], r["actor"], r["message"]) for r in rows]
    assert [e for _, _, e in notifications(db)] == [
        "firing",
        "firing",
        "acknowledged",
        "acknowledged",
        "resolved",
        "resolved",
    ]
    # Marked a false positive afterwards, for the reports.
    resolve_by_hand(db, config, incident_id, "alice", None, True, T0 + 700)
    assert get_incident(db, incident_id).resolution == "false_positive"  # type: ignore[union-attr]


def test_hostile_label_values_are_stored_bounded_and_keys_stay_short(
    db: Database, config: Config
) -> None:
    huge = "x" * (1024 * 1024)
    hostile = alert("Evil", service="; rm -rf /", instance="--help", job="ünïcødé ☃", note=huge)
    incident_id = fire(db, config, T0, hostile).opened[0]
    incident = get_incident(db, incident_id)
    assert incident is not None
    assert len(incident.key) <= 512
    assert incident.labels["service"] == "; rm -rf /" and incident.labels["job"] == "ünïcødé ☃"
    assert len(incident.labels["note"]) < 20000
    # The same hostile alert again is the same incident.
    assert fire(db, config, T0 + 60, hostile).opened == []


def test_an_alert_still_firing_after_a_manual_resolve_does_not_reopen_until_it_clears(
    db: Database, config: Config
) -> None:
    a = alert(service="backend")
    incident_id = fire(db, config, T0, a).opened[0]
    resolve_by_hand(db, config, incident_id, "alice", "known issue", True, T0 + 60)
    count = len(notifications(db))
    for minute in range(2, 30):  # well past reopen_within
        result = fire(db, config, T0 + minute * 60, a)
        assert result.opened == [] and result.reopened == []
    assert len(notifications(db)) == count
    assert get_incident(db, incident_id).status == "resolved"  # type: ignore[union-attr]
    fire(db, config, T0 + 1900)  # it clears
    assert "alert_cleared" in timeline_kinds(db, incident_id)
    again = fire(db, config, T0 + 1960, a)  # and fires again: a new problem
    assert again.opened or again.reopened


def test_a_new_alert_of_a_resolved_by_hand_incident_reopens_it(
    db: Database, config: Config
) -> None:
    incident_id = fire(db, config, T0, alert(service="backend", instance="a")).opened[0]
    resolve_by_hand(db, config, incident_id, "alice", None, False, T0 + 60)
    result = fire(
        db,
        config,
        T0 + 120,
        alert(service="backend", instance="a"),
        alert(service="backend", instance="b"),
    )
    assert result.reopened == [incident_id]


def test_flapping_that_starts_on_a_resolve_sends_no_firing_notice(
    tmp_path: Path, db: Database
) -> None:
    path = tmp_path / "flap.yaml"
    path.write_text(
        CONFIG.replace("flapping: {changes: 4, window: 1h}", "flapping: {changes: 3, window: 1h}")
    )
    config = load_config(path, {})
    a = alert(service="backend")
    incident_id = fire(db, config, T0, a).opened[0]
    fire(db, config, T0 + 300)
    fire(db, config, T0 + 360)  # resolved (1)
    fire(db, config, T0 + 400, a)  # reopened (2)
    fire(db, config, T0 + 800)
    fire(db, config, T0 + 860)  # resolved (3): flapping starts now
    assert "flapping_started" in timeline_kinds(db, incident_id)
    last = [e for i, _, e in notifications(db) if i == incident_id][-2:]
    assert last == ["resolved", "resolved"]


def test_with_auto_resolve_off_nothing_resolves_by_itself(tmp_path: Path, db: Database) -> None:
    path = tmp_path / "manual.yaml"
    path.write_text(CONFIG)
    config = load_config(path, {"INCIDENT_AUTO_RESOLUTION_ENABLED": "false"})
    incident_id = fire(db, config, T0, alert(service="backend")).opened[0]
    for minute in range(1, 5):
        fire(db, config, T0 + minute * 600, failed=("prom",))
    fire(db, config, T0 + 4000)
    fire(db, config, T0 + 4100)
    statuses = {i.rule: i.status for i in list_incidents(db, None, None)}
    assert statuses == {"backend-down": "open", "source_unreachable": "open"}
    assert get_incident(db, incident_id).status == "open"  # type: ignore[union-attr]


def test_a_rule_can_route_the_source_unreachable_incident(tmp_path: Path, db: Database) -> None:
    path = tmp_path / "routed.yaml"
    path.write_text(
        CONFIG
        + "  - {name: sources, match: {alertname: IncidentSourceUnreachable}, severity: warning, notify: [slack]}\n"
    )
    config = load_config(path, {})
    for minute in range(3):
        fire(db, config, T0 + minute * 60, failed=("prom",))
    (incident,) = list_incidents(db, None, None)
    assert (incident.rule, incident.severity, incident.key) == (
        "sources",
        "warning",
        "source_unreachable:source=prom",
    )
    assert notifications(db) == [(incident.id, "slack", "firing")]


def test_a_storm_is_resolved_on_its_channels_once_all_its_incidents_are(
    db: Database, config: Config
) -> None:
    alerts = [alert("Disk", instance=f"host{i}", severity="critical") for i in range(5)]
    fire(db, config, T0, *alerts)
    fire(db, config, T0 + 100, *alerts[:1])  # four gone, one still firing
    fire(db, config, T0 + 400, *alerts[:1])
    fire(db, config, T0 + 460, *alerts[:1])
    assert [e for i, _, e in notifications(db) if i is None] == ["storm", "storm"]
    fire(db, config, T0 + 800)
    fire(db, config, T0 + 860)  # the last one resolves
    rows = list(
        db.query(
            "SELECT channel, event, message FROM notifications WHERE incident_id IS NULL ORDER BY id"
        )
    )
    assert sorted((r["event"], r["channel"]) for r in rows) == [
        ("resolved", "pd"),
        ("resolved", "slack"),
        ("storm", "pd"),
        ("storm", "slack"),
    ]
    assert len({json.loads(r["message"])["storm_id"] for r in rows}) == 1
    fire(db, config, T0 + 900)
    assert (
        len(list(db.query("SELECT id FROM notifications WHERE incident_id IS NULL"))) == 4
    )  # once


def test_a_channel_that_only_got_the_escalation_hears_the_resolve(
    db: Database, config: Config
) -> None:
    from incident_cli.notify import outbox

    incident_id = fire(db, config, T0, alert("Disk", severity="warning")).opened[0]  # slack only
    incident = get_incident(db, incident_id)
    assert incident is not None
    db.conn.execute("BEGIN IMMEDIATE")
    db.conn.execute(
        "INSERT INTO notifications (incident_id, channel, event, status, message, created_at, next_attempt_at) VALUES (?, 'pd', 'escalation', 'sent', '{}', ?, ?)",
        (incident_id, T0, T0),
    )
    db.conn.execute("COMMIT")
    fire(db, config, T0 + 300)
    fire(db, config, T0 + 360)
    assert sorted(e for i, c, e in notifications(db) if e == "resolved") == ["resolved", "resolved"]
    assert outbox.channels_that_got_firing(db, incident_id) == ["pd", "slack"]


def test_an_alert_of_a_grouped_incident_that_clears_and_fires_again_is_firing_again(
    tmp_path: Path, db: Database
) -> None:
    path = tmp_path / "grouped.yaml"
    path.write_text(
        CONFIG + "  - {name: disk, match: {alertname: DiskFull}, group_by: [alertname]}\n"
    )
    config = load_config(path, {})
    a, b = alert("DiskFull", instance="a"), alert("DiskFull", instance="b")
    incident_id = fire(db, config, T0, a, b).opened[0]
    fire(db, config, T0 + 60, a)  # b clears
    fire(db, config, T0 + 120, a, b)  # and fires again
    states = [
        r["state"]
        for r in db.query(
            "SELECT state FROM alerts WHERE incident_id = ? ORDER BY id", [incident_id]
        )
    ]
    assert states == ["firing", "firing"]
    assert timeline_kinds(db, incident_id).count("alert_firing") == 3
