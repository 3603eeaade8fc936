"""The blast-radius breaker (`recovery.breaker`): above every (rule, target) budget, no more
than `max_actions` command or block_ip actions start within `within`, and none while more than
`max_incidents` incidents have a fix planned. While it is open due fixes stay pending, one
`breaker` notification goes to the escalation channels, `status` exits 1 and the metric says
so; `incident breaker reset` (or `auto_reset`) closes it and starts a new window."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from incident_cli.config.model import Config
from incident_cli.recovery.tick import recover_due
from tests.support import backend
from tests.support.binaries import CliResult, run_cli
from tests.support.notify import receiver
from tests.support.recover import (
    T0,
    actions,
    alert,
    db_for,
    fire,
    load,
    recovery_config,
    script,
    timeline,
)

pytestmark = pytest.mark.usefixtures("both_backends")

RULES = """
defaults: {{notify: []}}
channels:
  hook: {{type: webhook, url: "{url}"}}
escalation: {{channels: [hook]}}
recovery:
  breaker: {breaker}
rules:
  - name: down
    match: {{alertname: Down}}
    handler: service_down
    group_by: [service]
    recovery: {{commands: [[./fix.sh, "{{service}}"]], timeout: 10s}}
"""


def setup(tmp_path: Path, breaker: str, url: str = "http://127.0.0.1:9/hook") -> Config:
    script(tmp_path, "fix.sh", 'echo "$1" >> runs.log\n')
    return load(recovery_config(tmp_path, RULES.format(url=url, breaker=breaker)))


def cli(tmp_path: Path, *args: str) -> CliResult:
    """`incident` as cron runs it, on this test's state DB."""
    return run_cli(["--db", backend.locate(tmp_path / "state.db"), *args], cwd=tmp_path)


def runs(tmp_path: Path) -> list[str]:
    log = tmp_path / "runs.log"
    return sorted(log.read_text().splitlines()) if log.exists() else []


def fire_services(tmp_path: Path, config: Config, now: float, *services: str) -> None:
    db = db_for(tmp_path)
    fire(db, config, now, *(alert(alertname="Down", service=s) for s in services))
    db.close()


def statuses(tmp_path: Path) -> list[str]:
    db = db_for(tmp_path)
    out = []
    for incident_id in (1, 2, 3, 4):
        out += [a["status"] for a in actions(db, incident_id)]
    db.close()
    return out


def test_the_breaker_holds_fixes_past_max_actions_until_reset_as_cron_runs_it(
    tmp_path: Path,
) -> None:
    with receiver() as hook:
        config = setup(tmp_path, "{max_actions: 2, within: 15m}", hook.url + "/hook")
        fire_services(tmp_path, config, time.time() - 5, "a", "b", "c", "d")

        first = cli(tmp_path, "recover")
        assert first.code == 0, first.stderr
        assert len(runs(tmp_path)) == 2  # the third start would be more than max_actions
        assert sorted(statuses(tmp_path)) == ["pending", "pending", "succeeded", "succeeded"]
        db = db_for(tmp_path)
        held = [
            e
            for i in (1, 2, 3, 4)
            for e in timeline(db, i)
            if e["kind"] == "note" and "held by the recovery breaker" in e["message"]
        ]
        db.close()
        assert len(held) == 2
        assert "more than 2 command/block_ip actions within 15m" in held[0]["message"]
        assert "incident breaker reset" in held[0]["message"]

        status = cli(tmp_path, "status")
        assert status.code == 1
        assert "recovery breaker open" in status.stdout
        metrics = cli(tmp_path, "metrics")
        assert "incident_recovery_breaker_open 1.0" in metrics.stdout

        # Another tick while it is open: nothing starts, no second note, no second message.
        again = cli(tmp_path, "recover")
        assert again.code == 0, again.stderr
        assert len(runs(tmp_path)) == 2
        assert cli(tmp_path, "notify").code == 0
        breaker_posts = [r.body for r in hook.received if r.body.get("event") == "breaker"]
        assert len(breaker_posts) == 1
        assert "more than 2 command/block_ip actions" in str(breaker_posts[0])
        db = db_for(tmp_path)
        notes = [e for i in (1, 2, 3, 4) for e in timeline(db, i) if "held by" in e["message"]]
        db.close()
        assert len(notes) == 2

        reset = cli(tmp_path, "breaker", "reset", "--by", "alice", "--note", "checked")
        assert reset.code == 0, reset.stderr
        assert "closed by alice" in reset.stdout
        assert "incident_recovery_breaker_open 0.0" in cli(tmp_path, "metrics").stdout
        status_json = cli(tmp_path, "status", "--json").json()
        assert status_json["breaker"]["open"] is False
        assert status_json["breaker"]["closed_by"] == "alice"

        # A reset starts a new window: the two earlier starts no longer count.
        after = cli(tmp_path, "recover")
        assert after.code == 0, after.stderr
        assert runs(tmp_path) == ["a", "b", "c", "d"]
        assert cli(tmp_path, "status").code == 0


def test_the_breaker_opens_when_too_many_incidents_have_fixes_planned(tmp_path: Path) -> None:
    config = setup(tmp_path, "{max_actions: 10, within: 15m, max_incidents: 2}")
    fire_services(tmp_path, config, T0, "a", "b", "c")
    db = db_for(tmp_path)
    result = recover_due(db, config, T0 + 1)
    assert runs(tmp_path) == []
    assert {a.outcome for a in result.actions} == {"held"}
    assert "more than 2 incidents with planned fixes open at once (3)" in str(
        result.actions[0].detail
    )
    queued = db.conn.execute(
        "SELECT channel, event, incident_id FROM notifications WHERE event = 'breaker'"
    ).fetchall()
    assert queued == [("hook", "breaker", None)]
    db.close()


def test_auto_reset_closes_it_once_within_has_passed_with_nothing_tripping_it(
    tmp_path: Path,
) -> None:
    config = setup(tmp_path, "{max_actions: 1, within: 10m, auto_reset: true}")
    fire_services(tmp_path, config, T0, "a", "b")
    db = db_for(tmp_path)
    recover_due(db, config, T0 + 1)
    assert runs(tmp_path) == ["a"]
    recover_due(db, config, T0 + 300)  # still open: within has not passed
    assert runs(tmp_path) == ["a"]
    recover_due(db, config, T0 + 605)
    assert runs(tmp_path) == ["a", "b"]
    db.close()


def test_without_auto_reset_it_stays_open_until_someone_resets_it(tmp_path: Path) -> None:
    config = setup(tmp_path, "{max_actions: 1, within: 10m}")
    fire_services(tmp_path, config, T0, "a", "b")
    db = db_for(tmp_path)
    recover_due(db, config, T0 + 1)
    recover_due(db, config, T0 + 7200)
    assert runs(tmp_path) == ["a"]
    db.close()


def test_dry_run_shows_what_the_breaker_would_hold_and_changes_nothing(tmp_path: Path) -> None:
    config = setup(tmp_path, "{max_actions: 1, within: 10m}")
    fire_services(tmp_path, config, T0, "a", "b")
    db = db_for(tmp_path)
    result = recover_due(db, config, T0 + 1, dry_run=True)
    assert [a.outcome for a in result.actions] == ["would-run", "would-hold"]
    assert db.conn.execute("SELECT opened_at FROM recovery_breaker").fetchone() == (None,)
    assert db.conn.execute("SELECT count(*) FROM notifications").fetchone() == (0,)
    db.close()


def test_breaker_off_lets_every_due_fix_start(tmp_path: Path) -> None:
    config = setup(tmp_path, "false")
    services = [f"s{i}" for i in range(12)]
    fire_services(tmp_path, config, T0, *services)
    db = db_for(tmp_path)
    recover_due(db, config, T0 + 1)
    db.close()
    assert runs(tmp_path) == sorted(services)


def test_a_bad_breaker_setting_is_a_config_error(tmp_path: Path) -> None:
    recovery_config(
        tmp_path, RULES.format(url="http://127.0.0.1:9/hook", breaker="{max_actions: 0}")
    )
    result = cli(tmp_path, "recover")
    assert result.code == 78
    assert "recovery.breaker.max_actions" in result.stderr
    assert "Traceback" not in result.stderr


def test_reset_with_no_note_is_bad_usage(tmp_path: Path) -> None:
    setup(tmp_path, "{max_actions: 1}")
    result = cli(tmp_path, "breaker", "reset", "--by", "alice")
    assert result.code == 2
    assert "--note" in result.stderr


def test_block_ip_actions_count_and_are_held_like_commands(tmp_path: Path) -> None:
    script(tmp_path, "fix.sh", 'echo "$1" >> runs.log\n')
    rules = RULES.format(url="http://127.0.0.1:9/hook", breaker="{max_actions: 1, within: 10m}")
    rules += """
  - name: spike
    match: {alertname: Spike}
    handler: security_incident
    security: {ip_label: source_ip, block_command: [./fix.sh, "ban-{ip}"]}
security: {auto_block: true}
"""
    config = load(recovery_config(tmp_path, rules))
    db = db_for(tmp_path)
    fire(db, config, T0, alert(alertname="Spike", source_ip="203.0.113.9"))
    fire(
        db,
        config,
        T0,
        alert(alertname="Spike", source_ip="203.0.113.9"),
        alert(alertname="Down", service="a"),
    )
    result = recover_due(db, config, T0 + 1)
    db.close()
    assert runs(tmp_path) == ["ban-203.0.113.9"]  # the block started first and counts
    by_kind = {(a.kind, a.outcome) for a in result.actions}
    assert ("block_ip", "succeeded") in by_kind
    assert ("command", "held") in by_kind
    assert ("escalate", "succeeded") in by_kind  # escalations are not held
