"""The mass-resolve guard: one poll that would clear most open incidents has those clears held."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from sqlite_utils import Database

from incident_cli.config.model import Config
from incident_cli.errors import ConfigError
from incident_cli.lifecycle.result import PollResult
from incident_cli.notify.channels.base import Message, facts_of, plain_text
from incident_cli.notify.channels.registry import build
from incident_cli.store.connection import open_db
from incident_cli.store.incidents import get_incident, list_incidents
from tests.support.builders import T0, alert, fire, load, write_config

CONFIG = """
sources:
  prom: {type: prometheus, url: "http://127.0.0.1:9"}
incidents:
  resolve_after: 1m
  GUARD
channels:
  slack: {type: slack, webhook_url: "https://hooks.example/slack"}
  pd: {type: pagerduty, routing_key: "rk-0123456789"}
  hook: {type: webhook, url: "https://ops.example/hook"}
defaults: {notify: [slack, pd, hook]}
rules:
  - {name: down, match: {alertname: Down}, group_by: [alertname, service]}
"""
GUARD = "mass_resolve_guard: {min_open: 10, max_fraction: 0.5, hold: 10m}"


def make_config(tmp_path: Path, guard: str = GUARD) -> Config:
    return load(write_config(tmp_path, CONFIG.replace("GUARD", guard)))


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path)


@pytest.fixture
def db(state_db: str) -> Database:
    """The state on each backend: SQLite and PostgreSQL."""
    return open_db(state_db)


def poll(db: Database, config: Config, now: float, services: list[str]) -> PollResult:
    """One poll in which `Down` fires for exactly these services."""
    return fire(db, config, now, *(alert("Down", source="prom", service=s) for s in services))


def services(n: int) -> list[str]:
    return [f"svc{i:02d}" for i in range(n)]


def statuses(db: Database) -> dict[str, str]:
    return {i.labels["service"]: i.status for i in list_incidents(db, None, None)}


def events(db: Database) -> list[tuple[int | None, str, str]]:
    return [
        (r["incident_id"], r["channel"], r["event"])
        for r in db.query("SELECT incident_id, channel, event FROM notifications ORDER BY id")
    ]


def kinds(db: Database, incident_id: int) -> list[str]:
    return [
        r["kind"]
        for r in db.query(
            "SELECT kind FROM timeline WHERE incident_id = ? ORDER BY id", [incident_id]
        )
    ]


def test_most_alerts_vanishing_at_once_keeps_their_incidents_open_for_the_hold(
    db: Database, config: Config
) -> None:
    everything = services(10)
    opened = poll(db, config, T0, everything).opened
    before = len(events(db))
    # Six of ten vanish in one poll (a restarted Prometheus): 0.6 > max_fraction.
    result = poll(db, config, T0 + 60, everything[6:])
    assert sorted(result.held) == sorted(opened[:6])
    for t in (T0 + 120, T0 + 180, T0 + 400):  # well past resolve_after
        assert poll(db, config, t, everything[6:]).resolved == []
    assert set(statuses(db).values()) == {"open"}
    # One note on each held incident, no alert_cleared; one notice per channel that takes it.
    held = get_incident(db, opened[0])
    assert held is not None
    assert kinds(db, held.id) == ["opened", "alert_firing", "note"]
    assert events(db)[before:] == [(None, "slack", "mass_resolve"), (None, "hook", "mass_resolve")]
    note = next(db.query("SELECT * FROM timeline WHERE kind = 'note'"))
    assert "6 of 10 open incidents" in note["message"]
    assert "mass_resolve_guard" in note["message"]


def test_incidents_whose_alerts_return_are_simply_kept_open_and_the_rest_resolve_after_the_hold(
    db: Database, config: Config
) -> None:
    everything = services(12)
    opened = poll(db, config, T0, everything).opened
    poll(db, config, T0 + 60, everything[:2])  # 10 of 12 vanish: held
    back = everything[:6]  # four of them come back during the hold
    poll(db, config, T0 + 120, back)
    before = len(events(db))
    assert poll(db, config, T0 + 600, back).resolved == []  # the hold (10m) has not ended
    result = poll(db, config, T0 + 661, back)
    assert sorted(result.resolved) == sorted(opened[6:])
    assert statuses(db) == {s: ("open" if s in back else "resolved") for s in everything}
    returned = get_incident(db, opened[3])
    assert returned is not None and returned.reopen_count == 0
    # The ones that came back never looked cleared: no alert_cleared, no alert_firing again.
    assert kinds(db, returned.id) == ["opened", "alert_firing", "note"]
    assert kinds(db, opened[8])[-2:] == ["alert_cleared", "resolved"]
    assert {e for _, _, e in events(db)[before:]} == {"resolved"}


def test_after_the_hold_the_same_absence_does_not_hold_again(db: Database, config: Config) -> None:
    everything = services(10)
    poll(db, config, T0, everything)
    poll(db, config, T0 + 60, [])
    result = poll(db, config, T0 + 700, [])
    assert result.held == [] and len(result.resolved) == 10


def test_a_hold_is_lifted_by_the_alerts_returning_so_a_later_vanishing_is_judged_afresh(
    db: Database, config: Config
) -> None:
    everything = services(10)
    poll(db, config, T0, everything)
    poll(db, config, T0 + 60, [])  # held until T0 + 660
    poll(db, config, T0 + 120, everything)  # all back
    # One of them goes away on its own: cleared at once, resolved after resolve_after.
    assert poll(db, config, T0 + 180, everything[1:]).held == []
    assert poll(db, config, T0 + 260, everything[1:]).resolved != []


@pytest.mark.parametrize(
    ("open_count", "vanishing", "held"),
    [
        (10, 6, True),  # 0.6 of 10
        (10, 5, False),  # exactly max_fraction is not more than it
        (9, 9, False),  # fewer open incidents than min_open
        (20, 11, True),
        (20, 10, False),
    ],
)
def test_the_guard_trips_only_above_max_fraction_of_at_least_min_open(
    db: Database, config: Config, open_count: int, vanishing: int, held: bool
) -> None:
    everything = services(open_count)
    poll(db, config, T0, everything)
    result = poll(db, config, T0 + 60, everything[vanishing:])
    assert len(result.held) == (vanishing if held else 0)
    cleared = [r for r in db.query("SELECT * FROM timeline WHERE kind = 'alert_cleared'")]
    assert len(cleared) == (0 if held else vanishing)


def test_hold_zero_turns_the_guard_off(tmp_path: Path, db: Database) -> None:
    config = make_config(tmp_path, "mass_resolve_guard: {hold: 0s}")
    everything = services(10)
    poll(db, config, T0, everything)
    assert poll(db, config, T0 + 60, []).held == []
    assert len(poll(db, config, T0 + 120, []).resolved) == 10


def test_the_guard_is_on_by_default(tmp_path: Path) -> None:
    incidents = make_config(tmp_path, "").incidents
    assert (
        incidents.mass_resolve_min_open,
        incidents.mass_resolve_max_fraction,
        incidents.mass_resolve_hold,
    ) == (10, 0.5, 600.0)


@pytest.mark.parametrize(
    ("guard", "problem"),
    [
        ("mass_resolve_guard: {max_fraction: 1.5}", "max_fraction"),
        ("mass_resolve_guard: {min_open: 0}", "min_open"),
        ("mass_resolve_guard: {hold: soon}", "hold"),
        ("mass_resolve_guard: {holds: 5m}", "holds"),
    ],
)
def test_a_bad_guard_setting_names_the_key(tmp_path: Path, guard: str, problem: str) -> None:
    with pytest.raises(ConfigError) as error:
        make_config(tmp_path, guard)
    assert "incidents.mass_resolve_guard" in str(error.value)
    assert problem in str(error.value)


def test_the_notice_says_how_many_were_held_and_until_when(db: Database, config: Config) -> None:
    everything = services(10)
    poll(db, config, T0, everything)
    poll(db, config, T0 + 60, [])
    rows = {
        r["channel"]: r for r in db.query("SELECT * FROM notifications WHERE incident_id IS NULL")
    }
    messages = {
        name: Message(r["id"], name, "mass_resolve", json.loads(r["message"]))
        for name, r in rows.items()
    }
    text = plain_text(facts_of(messages["hook"]))
    assert "[HELD] 10 of 10 open incidents cleared at once" in text
    assert "Held until 2027-01-15T08:11:00Z" in text
    # Each kind that takes it renders it as it renders a storm summary.
    slack = build(config.channels["slack"]).prepare(messages["slack"])
    assert "[HELD] 10 of 10 open incidents" in json.dumps(slack.body)
    hook = build(config.channels["hook"]).prepare(messages["hook"])
    assert (hook.body["event"], hook.body["status"]) == ("mass_resolve", "held")
    assert hook.body["details"]["held_until"] == "2027-01-15T08:11:00Z"


# --------------------------------------------------------------------------- a real Prometheus

RULES = """
groups:
- name: guard
  interval: 1s
  rules:
  - alert: ToyDown
    expr: toy_value > 0
    for: 6s
"""


@pytest.mark.integration
@pytest.mark.parametrize("hold", ["10m", "0s"])
def test_a_restarted_prometheus_resolves_nothing_while_its_alerts_are_pending_again(
    tmp_path: Path, hold: str
) -> None:
    from tests.support.binaries import prometheus_alert_states, run_cli, stack, wait_until

    names = [f"n{i:02d}" for i in range(12)]
    with stack(tmp_path, RULES, with_alertmanager=False) as (exporter, prom, _):
        config = tmp_path / "incident.yaml"
        config.write_text(
            f"sources: {{prometheus: {{type: prometheus, url: '{prom.url}', timeout: 5s}}}}\n"
            "incidents:\n  resolve_after: 1s\n"
            f"  mass_resolve_guard: {{min_open: 10, max_fraction: 0.5, hold: {hold}}}\n"
            "channels: {hook: {type: webhook, url: 'http://127.0.0.1:9/hook'}}\n"
            "defaults: {notify: [hook]}\n"
            "rules: [{name: toy, match: {alertname: ToyDown}, group_by: [alertname, name]}]\n"
        )

        def poll() -> int:
            return run_cli(["-c", str(config), "poll"], cwd=tmp_path).code

        def firing() -> int:
            states = prometheus_alert_states(prom)
            return sum(states.get(f"ToyDown/{n}") == "firing" for n in names)

        for name in names:
            exporter.set(name, 1)
        wait_until(lambda: firing() == len(names), timeout=30)
        assert poll() == 0
        prom.stop()
        prom.start()  # same port and data: its alerts are pending for 6s again
        codes = []
        while firing() < len(names):
            codes.append(poll())
            time.sleep(0.3)
        codes.append(poll())
        assert codes.count(0) >= 3, codes  # polls that saw no alert firing
        listed = run_cli(["-c", str(config), "list", "--status", "all", "--json"], cwd=tmp_path)
        shown = listed.json()
        db = open_db(tmp_path / "incident.db")
        notices = [r["event"] for r in db.query("SELECT event FROM notifications")]
    assert len(shown) == len(names)
    if hold == "0s":  # the guard off: every incident resolved and reopened
        assert all(i["reopen_count"] == 1 for i in shown)
        assert notices.count("resolved") == len(names)
        return
    assert all(i["status"] == "open" and i["reopen_count"] == 0 for i in shown)
    assert sorted(notices) == ["firing"] * len(names) + ["mass_resolve"]
    notes = list(db.query("SELECT message FROM timeline WHERE kind = 'note'"))
    assert len(notes) == len(names)
    assert all("12 of 12 open incidents" in n["message"] for n in notes)


def test_a_state_file_from_before_the_guard_upgrades_with_nothing_held(tmp_path: Path) -> None:
    import sqlite3

    from incident_cli.store.database import Database as StateDb
    from incident_cli.store.migrations import migrations

    path = tmp_path / "state.db"
    old = StateDb(sqlite3.connect(path))
    migrations.apply(old, stop_before="m015_clear_held_until")
    old.conn.execute(
        "INSERT INTO incidents (key, title, status, severity, rule, handler, source, labels,"
        " annotations, opened_at, updated_at) VALUES ('k', 't', 'open', 'warning', 'down',"
        " 'default', 'prom', '{}', '{}', 1, 1)"
    )
    old.conn.commit()
    old.close()
    db = open_db(path)
    assert [r["clear_held_until"] for r in db.query("SELECT * FROM incidents")] == [None]
