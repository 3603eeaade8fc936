"""Attempt budgets, backoff, verification, escalation and claims, with an injected clock and
real subprocesses."""

from __future__ import annotations

import sqlite3
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlite_utils import Database

from incident_cli.config.model import Config
from incident_cli.lifecycle.manual import acknowledge, resolve_by_hand
from incident_cli.recovery.tick import recover_due
from incident_cli.store.connection import open_db
from incident_cli.store.incidents import get_incident
from tests.support import backend
from tests.support.recover import (
    T0,
    actions,
    alert,
    db_for,
    fire,
    kinds,
    load,
    recovery_config,
    runs,
    script,
    timeline,
)

pytestmark = pytest.mark.usefixtures("both_backends")

DOWN = alert(alertname="BackendServiceDown", service="backend")


def fix_config(
    tmp_path: Path,
    command: str = '["./fix.sh", "{service}"]',
    *,
    verify: str = "",
    max_attempts: int = 3,
    backoff: str = "30s",
    cooldown: str = "1h",
    extra: str = "",
    env: dict[str, str] | None = None,
) -> Config:
    path = recovery_config(
        tmp_path,
        f"""
        channels:
          hook: {{type: webhook, url: "http://127.0.0.1:9/hook"}}
        defaults: {{notify: []}}
        escalation: {{channels: [hook]}}
        rules:
          - name: backend-down
            match: {{alertname: BackendServiceDown}}
            handler: service_down
            group_by: [alertname, service]
            recovery:
              commands: [{command}]
              timeout: 10s
              max_attempts: {max_attempts}
              backoff: {backoff}
              cooldown: {cooldown}
              {verify}
        {extra}
        """,
    )
    return load(path, env)


def failing_fix(tmp_path: Path) -> None:
    script(tmp_path, "fix.sh", 'echo "$1" >> runs.log\necho "still broken" >&2\nexit 1\n')


def passing_fix(tmp_path: Path) -> None:
    script(tmp_path, "fix.sh", 'echo "$1" >> runs.log\n')


def escalations(db: Database) -> list[dict[str, Any]]:
    return list(db.query("SELECT * FROM notifications WHERE event = 'escalation'"))


def test_a_fix_that_always_fails_runs_exactly_max_attempts_times_then_escalates_once(
    tmp_path: Path,
) -> None:
    failing_fix(tmp_path)
    config = fix_config(tmp_path)
    db = db_for(tmp_path)
    # Twenty minutes of ticks every 10s, as cron would run `incident run`.
    for i in range(120):
        now = T0 + 10 * i
        fire(db, config, now, DOWN)
        recover_due(db, config, now + 1)
    assert runs(tmp_path) == ["backend"] * 3
    rows = actions(db)
    assert [(a["status"], a["attempts"]) for a in rows] == [
        ("failed", 1),
        ("failed", 2),
        ("failed", 3),
    ]
    assert all(a["exit_code"] == 1 and "still broken" in a["output"] for a in rows)
    assert kinds(db).count("escalated") == 1
    [queued] = escalations(db)
    assert queued["channel"] == "hook"
    incident = get_incident(db, 1)
    assert incident is not None and incident.escalated_at is not None
    assert incident.fixed_at is None
    [event] = [e for e in timeline(db) if e["kind"] == "escalated"]
    assert "recovery failed 3 times" in event["message"]


def test_backoff_doubles_between_attempts(tmp_path: Path) -> None:
    failing_fix(tmp_path)
    config = fix_config(tmp_path, max_attempts=4, backoff="30s")
    db = db_for(tmp_path)
    fire(db, config, T0, DOWN)
    now = T0
    for _ in range(400):  # ticks every 2s
        recover_due(db, config, now)
        now += 2
    rows = list(db.query("SELECT * FROM actions ORDER BY id"))
    assert len(rows) == 4
    gaps = [rows[i + 1]["due_at"] - rows[i]["finished_at"] for i in range(3)]
    assert gaps == [30.0, 60.0, 120.0]
    # Nothing started before it was due.
    assert all(r["started_at"] >= r["due_at"] for r in rows)
    assert len(runs(tmp_path)) == 4


def test_the_budget_is_kept_in_the_db_across_restarts_and_reopens(tmp_path: Path) -> None:
    failing_fix(tmp_path)
    config = fix_config(tmp_path, max_attempts=2, backoff="0s", cooldown="1h")
    db = db_for(tmp_path)
    fire(db, config, T0, DOWN)
    recover_due(db, config, T0 + 1)
    recover_due(db, config, T0 + 2)
    assert len(runs(tmp_path)) == 2
    assert kinds(db).count("escalated") == 1
    # The service recovers by itself, the incident resolves, then it fires again.
    fire(db, config, T0 + 10)
    fire(db, config, T0 + 20)
    db.close()
    # A new process: new connection, config loaded again.
    db = open_db(backend.locate(tmp_path / "state.db"))
    config = fix_config(tmp_path, max_attempts=2, backoff="0s", cooldown="1h")
    result = fire(db, config, T0 + 30, DOWN)
    assert result.reopened == [1]
    recover_due(db, config, T0 + 31)
    assert len(runs(tmp_path)) == 2, "the spent budget was forgotten"
    last = actions(db)[-1]
    assert last["status"] == "skipped"
    assert "attempt budget spent" in last["error"]
    # The budget is still spent within the cooldown: the incident escalated for it already.
    assert kinds(db).count("escalated") == 1
    # Once the cooldown has passed, the fix may be tried again.
    fire(db, config, T0 + 40)
    fire(db, config, T0 + 50)
    fire(db, config, T0 + 3700, DOWN)  # beyond reopen_within: a new incident, same target
    recover_due(db, config, T0 + 3701)
    assert len(runs(tmp_path)) == 3


def test_reopens_within_the_cooldown_escalate_once_while_the_budget_stays_spent(
    tmp_path: Path,
) -> None:
    # The field case: max_attempts spent, then the alert flaps; every reopen escalated again.
    failing_fix(tmp_path)
    config = fix_config(tmp_path, max_attempts=1, backoff="0s", cooldown="1h")
    db = db_for(tmp_path)
    fire(db, config, T0, DOWN)
    recover_due(db, config, T0 + 1)
    assert kinds(db).count("escalated") == 1
    now = T0 + 10
    for reopen in range(1, 4):
        fire(db, config, now)  # cleared
        fire(db, config, now + 10)  # resolved
        assert get_incident(db, 1).status == "resolved"  # type: ignore[union-attr]
        assert fire(db, config, now + 20, DOWN).reopened == [1]
        recover_due(db, config, now + 21)
        assert get_incident(db, 1).reopen_count == reopen  # type: ignore[union-attr]
        now += 60
    assert len(runs(tmp_path)) == 1
    assert kinds(db).count("escalated") == 1
    assert len(escalations(db)) == 1
    skipped = [a for a in actions(db) if a["status"] == "skipped"]
    assert len(skipped) == 3 and all("attempt budget spent" in a["error"] for a in skipped)
    assert all("already escalated" in a["error"] for a in skipped)
    # Past the cooldown the budget is back: the fix runs again and, failing, escalates again.
    later = T0 + 3700
    fire(db, config, later)
    fire(db, config, later + 10)
    assert fire(db, config, later + 20, DOWN).reopened == [1]
    recover_due(db, config, later + 21)
    assert len(runs(tmp_path)) == 2
    assert kinds(db).count("escalated") == 2


def test_an_acknowledged_incident_is_not_escalated_when_the_budget_is_spent(
    tmp_path: Path,
) -> None:
    failing_fix(tmp_path)
    config = fix_config(tmp_path, max_attempts=1)
    db = db_for(tmp_path)
    fire(db, config, T0, DOWN)
    acknowledge(db, config, 1, "alice", None, T0 + 1)
    recover_due(db, config, T0 + 2)
    assert len(runs(tmp_path)) == 1  # acknowledging stops escalation, not the fix
    assert "escalated" not in kinds(db)
    assert escalations(db) == []
    assert any("acknowledged by alice" in e["message"] for e in timeline(db))


def test_a_fix_without_verify_that_succeeds_marks_the_incident_fixed(tmp_path: Path) -> None:
    passing_fix(tmp_path)
    config = fix_config(tmp_path)
    db = db_for(tmp_path)
    fire(db, config, T0, DOWN)
    result = recover_due(db, config, T0 + 1)
    assert [a.outcome for a in result.actions] == ["succeeded"]
    [action] = actions(db)
    assert action["status"] == "succeeded" and action["exit_code"] == 0
    incident = get_incident(db, 1)
    assert incident is not None and incident.fixed_at is not None
    fire(db, config, T0 + 10)
    fire(db, config, T0 + 20)
    incident = get_incident(db, 1)
    assert incident is not None
    assert (incident.status, incident.resolution) == ("resolved", "recovered")
    assert kinds(db)[-1] == "resolved"


def test_verify_within_waits_across_ticks_for_the_alerts_to_clear(tmp_path: Path) -> None:
    passing_fix(tmp_path)
    config = fix_config(tmp_path, verify="verify: {within: 5m}")
    db = db_for(tmp_path)
    fire(db, config, T0, DOWN)
    started = time.monotonic()
    recover_due(db, config, T0 + 1)
    assert time.monotonic() - started < 3  # never sleeps waiting for the verdict
    [action] = actions(db)
    assert action["status"] == "running" and action["exit_code"] == 0
    # Still firing two minutes later: keep waiting.
    fire(db, config, T0 + 120, DOWN)
    result = recover_due(db, config, T0 + 121)
    assert [a.outcome for a in result.actions] == ["verifying"]
    # The poll sees it clear; the next recover verifies the fix.
    fire(db, config, T0 + 130)
    result = recover_due(db, config, T0 + 131)
    assert [a.outcome for a in result.actions] == ["succeeded"]
    assert actions(db)[0]["status"] == "succeeded"
    fire(db, config, T0 + 140)
    incident = get_incident(db, 1)
    assert incident is not None and incident.resolution == "recovered"
    assert len(runs(tmp_path)) == 1


def test_a_fix_that_does_not_clear_the_alerts_in_time_failed_and_is_retried(
    tmp_path: Path,
) -> None:
    passing_fix(tmp_path)
    config = fix_config(tmp_path, verify="verify: {within: 1m}", backoff="30s")
    db = db_for(tmp_path)
    fire(db, config, T0, DOWN)
    recover_due(db, config, T0 + 1)
    fire(db, config, T0 + 70, DOWN)
    result = recover_due(db, config, T0 + 71)
    assert [a.outcome for a in result.actions] == ["failed"]
    first, retry = actions(db)
    assert first["status"] == "failed"
    assert "not recovered within the verify window" in first["error"]
    assert (retry["status"], retry["attempts"]) == ("pending", 1)
    recover_due(db, config, T0 + 95)
    assert len(runs(tmp_path)) == 1  # backoff: not yet
    recover_due(db, config, T0 + 105)
    assert len(runs(tmp_path)) == 2


class Health:
    """A loopback health endpoint the test switches between 200 and 503."""

    def __init__(self) -> None:
        self.healthy = False
        health = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200 if health.healthy else 503)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/health"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def health() -> Iterator[Health]:
    endpoint = Health()
    yield endpoint
    endpoint.close()


def test_verify_http_polls_the_health_url_each_tick(tmp_path: Path, health: Health) -> None:
    passing_fix(tmp_path)
    config = fix_config(tmp_path, verify=f'verify: {{http: "{health.url}", within: 2m}}')
    db = db_for(tmp_path)
    fire(db, config, T0, DOWN)
    result = recover_due(db, config, T0 + 1)
    assert [a.outcome for a in result.actions] == ["verifying"]
    assert "503" in str(result.actions[0].detail)
    result = recover_due(db, config, T0 + 31)
    assert [a.outcome for a in result.actions] == ["verifying"]
    health.healthy = True
    result = recover_due(db, config, T0 + 61)
    assert [a.outcome for a in result.actions] == ["succeeded"]
    incident = get_incident(db, 1)
    assert incident is not None and incident.fixed_at == pytest.approx(T0 + 61, abs=5)
    assert any("answered HTTP 200" in e["message"] for e in timeline(db))


def test_verify_http_healthy_right_after_the_fix_succeeds_in_the_same_tick(
    tmp_path: Path, health: Health
) -> None:
    passing_fix(tmp_path)
    health.healthy = True
    config = fix_config(tmp_path, verify=f'verify: {{http: "{health.url}", within: 2m}}')
    db = db_for(tmp_path)
    fire(db, config, T0, DOWN)
    result = recover_due(db, config, T0 + 1)
    assert [a.outcome for a in result.actions] == ["succeeded"]


def test_verify_http_unhealthy_past_the_window_fails_the_attempt(
    tmp_path: Path, health: Health
) -> None:
    passing_fix(tmp_path)
    config = fix_config(
        tmp_path, verify=f'verify: {{http: "{health.url}", within: 1m}}', max_attempts=1
    )
    db = db_for(tmp_path)
    fire(db, config, T0, DOWN)
    recover_due(db, config, T0 + 1)
    result = recover_due(db, config, T0 + 62)
    assert [a.outcome for a in result.actions] == ["failed"]
    assert "HTTP 503" in actions(db)[0]["error"]
    assert kinds(db).count("escalated") == 1


def test_a_poll_that_resolves_before_verification_still_counts_as_recovered(
    tmp_path: Path,
) -> None:
    passing_fix(tmp_path)
    config = fix_config(tmp_path, verify="verify: {within: 5m}")
    db = db_for(tmp_path)
    fire(db, config, T0, DOWN)
    recover_due(db, config, T0 + 1)
    # Two polls without recover in between (separate cron lines): resolved as auto.
    fire(db, config, T0 + 10)
    fire(db, config, T0 + 20)
    incident = get_incident(db, 1)
    assert incident is not None and incident.resolution == "auto"
    recover_due(db, config, T0 + 21)
    incident = get_incident(db, 1)
    assert incident is not None and incident.resolution == "recovered"
    assert actions(db)[0]["status"] == "succeeded"
    assert "resolution auto → recovered" in timeline(db)[-1]["message"]


def test_a_verification_ends_when_the_incident_is_resolved_by_hand(tmp_path: Path) -> None:
    passing_fix(tmp_path)
    config = fix_config(tmp_path, verify="verify: {within: 5m}")
    db = db_for(tmp_path)
    fire(db, config, T0, DOWN)
    recover_due(db, config, T0 + 1)
    resolve_by_hand(db, config, 1, "bob", None, False, T0 + 5)
    recover_due(db, config, T0 + 6)
    assert actions(db)[0]["status"] == "skipped"
    incident = get_incident(db, 1)
    assert incident is not None and incident.resolution == "manual"


def test_pending_actions_of_a_resolved_incident_never_run(tmp_path: Path) -> None:
    passing_fix(tmp_path)
    config = fix_config(tmp_path)
    db = db_for(tmp_path)
    fire(db, config, T0, DOWN)
    resolve_by_hand(db, config, 1, "bob", None, False, T0 + 1)
    assert recover_due(db, config, T0 + 2).actions == []
    assert runs(tmp_path) == []


def test_recovery_switched_off_after_planning_skips_the_command(tmp_path: Path) -> None:
    passing_fix(tmp_path)
    config = fix_config(tmp_path)
    db = db_for(tmp_path)
    fire(db, config, T0, DOWN)
    off = fix_config(tmp_path, env={"AUTO_RECOVERY_ENABLED": "false"})
    result = recover_due(db, off, T0 + 1)
    assert [a.outcome for a in result.actions] == ["skipped"]
    assert runs(tmp_path) == []
    [action] = actions(db)
    assert action["status"] == "skipped" and "AUTO_RECOVERY_ENABLED" in action["error"]
    assert "action_skipped" in kinds(db)
    # Skipped is final: turning it back on later does not run a stale fix.
    recover_due(db, config, T0 + 2)
    assert runs(tmp_path) == []


def test_the_default_timeout_honours_service_recovery_timeout_minutes(tmp_path: Path) -> None:
    script(tmp_path, "fix.sh", "sleep 30\n")
    path = recovery_config(
        tmp_path,
        """
        rules:
          - name: d
            match: {alertname: BackendServiceDown}
            handler: service_down
            recovery: {commands: [[./fix.sh]], max_attempts: 1}
        """,
    )
    config = load(path, {"SERVICE_RECOVERY_TIMEOUT_MINUTES": "0.02"})  # 1.2s
    db = db_for(tmp_path)
    fire(db, config, T0, DOWN)
    started = time.monotonic()
    recover_due(db, config, T0 + 1)
    assert time.monotonic() - started < 6
    [action] = actions(db)
    assert action["status"] == "failed"
    assert "timed out after 1s" in action["error"]


def test_later_commands_run_in_order_and_stop_at_the_first_failure(tmp_path: Path) -> None:
    script(tmp_path, "step.sh", 'echo "$1" >> runs.log\n[ "$1" != two ]\n')
    config = fix_config(
        tmp_path,
        '["./step.sh", one], ["./step.sh", two], ["./step.sh", three]',
        max_attempts=1,
    )
    db = db_for(tmp_path)
    fire(db, config, T0, DOWN)
    recover_due(db, config, T0 + 1)
    assert runs(tmp_path) == ["one", "two"]
    [action] = actions(db)
    assert action["status"] == "failed" and action["exit_code"] == 1
    assert "$ ./step.sh one" in action["output"] and "$ ./step.sh two" in action["output"]


# --------------------------------------------------------------------------- claims and leases


def test_an_action_another_tick_is_running_is_not_run_again(tmp_path: Path) -> None:
    passing_fix(tmp_path)
    config = fix_config(tmp_path)
    db = db_for(tmp_path)
    fire(db, config, T0, DOWN)
    db.conn.execute(
        "UPDATE actions SET status = 'running', started_at = ?, lease_until = ?",
        (T0 + 1, T0 + 100),
    )
    assert recover_due(db, config, T0 + 2).actions == []
    assert runs(tmp_path) == []


def test_an_expired_lease_fails_the_attempt_and_plans_a_retry(tmp_path: Path) -> None:
    passing_fix(tmp_path)
    config = fix_config(tmp_path, backoff="10s")
    db = db_for(tmp_path)
    fire(db, config, T0, DOWN)
    # A tick claimed it and was killed (attempt 1 counted, lease 70s).
    db.conn.execute(
        "UPDATE actions SET status = 'running', attempts = 1, started_at = ?, lease_until = ?",
        (T0 + 1, T0 + 71),
    )
    result = recover_due(db, config, T0 + 80)
    assert [a.outcome for a in result.actions] == ["failed"]
    first, retry = actions(db)
    assert first["status"] == "failed" and "lease expired" in first["error"]
    assert retry["status"] == "pending"
    recover_due(db, config, T0 + 95)
    assert runs(tmp_path) == ["backend"]
    assert actions(db)[1]["attempts"] == 2


def test_two_overlapping_ticks_run_a_due_action_exactly_once(tmp_path: Path) -> None:
    script(tmp_path, "fix.sh", 'echo "$1" >> runs.log\nsleep 0.5\n')
    config = fix_config(tmp_path)
    db = db_for(tmp_path)
    fire(db, config, T0, DOWN)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def tick() -> None:
        conn = open_db(backend.locate(tmp_path / "state.db"))
        try:
            barrier.wait()
            recover_due(conn, config, T0 + 1)
        except BaseException as exc:
            errors.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=tick) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert runs(tmp_path) == ["backend"]
    assert actions(db)[0]["status"] == "succeeded"


def test_no_write_transaction_is_held_while_a_command_runs(tmp_path: Path) -> None:
    # The fix itself takes the DB's write lock with no patience: it fails if recover holds it.
    writer = tmp_path / "fix.py"
    writer.write_text(
        f"#!{sys.executable}\n"
        "import sqlite3\n"
        "c = sqlite3.connect('state.db', timeout=0, isolation_level=None)\n"
        "c.execute('BEGIN IMMEDIATE'); c.execute('COMMIT')\n"
        "print('got the write lock')\n"
    )
    writer.chmod(0o755)
    config = fix_config(tmp_path, '["./fix.py"]', max_attempts=1)
    db = db_for(tmp_path)
    fire(db, config, T0, DOWN)
    recover_due(db, config, T0 + 1)
    [action] = actions(db)
    assert action["status"] == "succeeded", action["output"]
    assert "got the write lock" in action["output"]


def test_at_most_max_concurrent_actions_run_at_once_oldest_first(tmp_path: Path) -> None:
    script(
        tmp_path,
        "fix.sh",
        """
        python3 -c 'import time; print("start", time.time())' >> "spans.$1"
        sleep 0.4
        python3 -c 'import time; print("end", time.time())' >> "spans.$1"
        echo "$1" >> runs.log
        """,
    )
    config = fix_config(tmp_path, extra="recovery: {max_concurrent: 2}")
    db = db_for(tmp_path)
    services = ["s1", "s2", "s3", "s4", "s5"]
    for i in range(len(services)):  # opened one after another: s1 is the oldest
        fire(
            db,
            config,
            T0 + i,
            *[alert(alertname="BackendServiceDown", service=s) for s in services[: i + 1]],
        )
    recover_due(db, config, T0 + 10)
    spans = []
    for name in services:
        lines = dict(line.split() for line in (tmp_path / f"spans.{name}").read_text().splitlines())
        spans.append((float(lines["start"]), float(lines["end"])))
    most = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    assert most == 2
    # Claimed oldest first: each one started no later than the ones opened after it.
    starts = [s for s, _ in spans]
    assert starts[0] <= starts[2] and starts[1] <= starts[2] and starts[2] <= starts[4]


def test_the_db_is_consistent_after_a_tick(tmp_path: Path) -> None:
    failing_fix(tmp_path)
    config = fix_config(tmp_path)
    db = db_for(tmp_path)
    fire(db, config, T0, DOWN)
    recover_due(db, config, T0 + 1)
    assert not db.conn.in_transaction
    check = sqlite3.connect(tmp_path / "state.db").execute("PRAGMA integrity_check").fetchone()
    assert check == ("ok",)


def test_an_action_of_an_unknown_kind_is_refused_not_run(tmp_path: Path) -> None:
    passing_fix(tmp_path)
    config = fix_config(tmp_path)
    db = db_for(tmp_path)
    fire(db, config, T0, DOWN)
    db.conn.execute("UPDATE actions SET kind = 'teleport'")
    result = recover_due(db, config, T0 + 1)
    assert [a.outcome for a in result.actions] == ["refused"]
    assert runs(tmp_path) == []
