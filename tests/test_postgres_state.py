"""PostgreSQL as the state DB, end to end: `incident` run as cron runs it against a real
PostgreSQL, the tick lock across hosts, and the URL's password kept out of every output."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import psycopg
import pytest

from incident_cli.store.connection import open_db
from incident_cli.store.database import write_tx
from incident_cli.store.postgres import TICK_LOCK_KEY
from incident_cli.store.timeline import add_event, capture_inserts, take_captured
from tests.support.binaries import REPO, Process, cli_env, run_cli, start_alertmanager, wait_until
from tests.support.notify import receiver
from tests.support.postgres import PostgresServer

pytestmark = pytest.mark.postgres


def _password(url: str) -> str:
    return url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]


def _config(tmp_path: Path, am: Process | None = None, hook: str | None = None) -> Path:
    lines = ["sources:"]
    if am is not None:
        lines.append(f"  am: {{type: alertmanager, url: '{am.url}'}}")
    else:
        lines[0] = "sources: {}"
    if hook is not None:
        lines += ["channels:", f"  hook: {{type: webhook, url: '{hook}'}}"]
        lines += ["defaults: {notify: [hook]}"]
    path = tmp_path / "incident.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _post_alert(am: Process, name: str) -> None:
    import time

    now = time.time()
    body = [
        {
            "labels": {"alertname": name, "severity": "critical", "service": "api"},
            "annotations": {"summary": f"{name} fires"},
            "startsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 60)),
            "endsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 3600)),
        }
    ]
    request = urllib.request.Request(
        am.url + "/api/v2/alerts",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200


def _argv(config: Path, url: str) -> list[str]:
    return [sys.executable, "-m", "incident_cli", "-c", str(config), "--db", url]


def _lock_holders(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.objid = %s",
            (TICK_LOCK_KEY,),
        ).fetchall()
    return [row[0] for row in rows]


@pytest.mark.integration
def test_run_against_postgresql_opens_an_incident_and_notifies_the_webhook(
    tmp_path: Path, postgres_url: str
) -> None:
    am = start_alertmanager(tmp_path / "am")
    try:
        _post_alert(am, "CheckoutDown")
        with receiver() as hook:
            config = _config(tmp_path, am, hook.url)
            result = run_cli(["-c", str(config), "--db", postgres_url, "run"], cwd=tmp_path)
            assert result.code == 0, result.stderr
            assert [r.body["event"] for r in hook.received] == ["firing"]
            assert hook.received[0].body["incident"]["labels"]["alertname"] == "CheckoutDown"
        listed = run_cli(["--db", postgres_url, "list", "--json"], cwd=tmp_path)
        assert listed.code == 0, listed.stderr
        [incident] = listed.json()
        assert incident["id"] == 1 and incident["status"] == "open"
        with psycopg.connect(postgres_url) as conn:
            sent = conn.execute("SELECT status FROM notifications").fetchall()
        assert sent == [("sent",)]
    finally:
        am.stop()
    assert not (tmp_path / "incident.db").exists()  # nothing went to a SQLite file


def test_a_second_host_exits_75_naming_the_host_that_holds_the_lock(
    tmp_path: Path, postgres_url: str
) -> None:
    config = _config(tmp_path)
    argv = _argv(config, postgres_url)
    holder = subprocess.Popen(
        [*argv, "run", "--every", "1s", "--for", "60s"],
        cwd=tmp_path,
        env=cli_env({"INCIDENT_HOSTNAME": "host-a"}),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: _lock_holders(postgres_url) == ["incident@host-a"], timeout=30)
        second = run_cli(
            ["-c", str(config), "--db", postgres_url, "run"],
            cwd=tmp_path,
            env={"INCIDENT_HOSTNAME": "host-b"},
        )
        assert second.code == 75
        assert "host host-a" in second.stderr
        assert second.stderr.count("\n") == 1
        assert _password(postgres_url) not in second.stderr + second.stdout
        # A dead holder's session ends and the server frees its lock: the next tick runs.
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        wait_until(lambda: _lock_holders(postgres_url) == [], timeout=30)
        third = run_cli(
            ["-c", str(config), "--db", postgres_url, "run"],
            cwd=tmp_path,
            env={"INCIDENT_HOSTNAME": "host-b"},
        )
        assert third.code == 0, third.stderr
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_wait_retries_until_the_other_host_lets_go(tmp_path: Path, postgres_url: str) -> None:
    config = _config(tmp_path)
    with psycopg.connect(postgres_url, autocommit=True) as other:
        open_db(postgres_url).close()  # migrated first: the lock is all that is in the way
        other.execute("SELECT pg_advisory_lock(%s)", (TICK_LOCK_KEY,))
        waiting = subprocess.Popen(
            [*_argv(config, postgres_url), "--wait", "60", "run"],
            cwd=tmp_path,
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            with pytest.raises(subprocess.TimeoutExpired):
                waiting.wait(timeout=2)
            other.execute("SELECT pg_advisory_unlock(%s)", (TICK_LOCK_KEY,))
            _out, err = waiting.communicate(timeout=60)
        finally:
            if waiting.poll() is None:
                waiting.kill()
                waiting.wait()
    assert waiting.returncode == 0, err


def test_the_password_is_masked_in_status_config_show_and_errors(
    tmp_path: Path, postgres_server: PostgresServer, postgres_url: str
) -> None:
    password = _password(postgres_url)
    _config(tmp_path)
    status = run_cli(["--db", postgres_url, "status", "--json"], cwd=tmp_path)
    shown = run_cli(["--db", postgres_url, "config", "show"], cwd=tmp_path)
    masked = postgres_url.replace(f":{password}@", ":***@")
    assert status.json()["db"]["path"] == masked
    assert status.json()["db"]["backend"] == "postgresql"
    text = run_cli(["--db", postgres_url, "status"], cwd=tmp_path)
    assert f"db: {masked} (PostgreSQL, " in text.stdout
    assert "db: postgresql://" in shown.stdout and postgres_url.split("@")[1] in shown.stdout
    wrong = postgres_url.replace(password, "not-the-" + password)
    failed = run_cli(["--db", wrong, "run"], cwd=tmp_path)
    assert failed.code == 75
    assert "cannot connect to the state DB" in failed.stderr
    assert failed.stderr.count("\n") == 1
    for result in (status, text, shown, failed):
        assert password not in result.stdout + result.stderr


def test_the_password_can_come_from_state_password_file(tmp_path: Path, postgres_url: str) -> None:
    password = _password(postgres_url)
    (tmp_path / "pg.pass").write_text(password + "\n")
    bare = postgres_url.replace(f":{password}@", "@")
    (tmp_path / "incident.yaml").write_text(
        f"sources: {{}}\nstate: {{db: '{bare}', password_file: pg.pass}}\n"
    )
    env = {"PGPASSFILE": os.devnull}
    result = run_cli(["run"], cwd=tmp_path, env=env)
    assert result.code == 0, result.stderr
    shown = run_cli(["config", "show", "--json"], cwd=tmp_path, env=env)
    assert password not in shown.stdout
    assert shown.json()["config"]["state"]["db"].endswith(bare.split("@")[1])


def test_without_psycopg_one_line_says_what_to_install(tmp_path: Path, postgres_url: str) -> None:
    _config(tmp_path)
    code = "import sys; sys.modules['psycopg'] = None\nfrom incident_cli.cli import main\nmain()\n"
    proc = subprocess.run(
        [sys.executable, "-c", code, "--db", postgres_url, "run"],
        cwd=tmp_path,
        env={**cli_env(), "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 78
    assert proc.stderr.count("\n") == 1
    assert "pip install 'incident-cli[postgres]'" in proc.stderr
    assert _password(postgres_url) not in proc.stderr


def test_a_sqlite_tick_never_imports_psycopg(tmp_path: Path) -> None:
    _config(tmp_path)
    code = (
        "import sys\n"
        "from incident_cli.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('psycopg' in sys.modules)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, "run"],
        cwd=tmp_path,
        env={**cli_env(), "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.stdout.strip().splitlines()[-1] == "False", proc.stderr


def test_the_event_log_capture_keeps_committed_rows_only(postgres_url: str) -> None:
    db = open_db(postgres_url)
    try:
        assert db.is_postgres
        from incident_cli.store.batch import insert_incident

        capture_inserts(db)
        with write_tx(db):
            row: list[Any] = [1, "k", "t", "warning", "r", "h", "s", "{}", "{}"]
            incident = insert_incident(db, [*row, None, 1.0, 1.0, 1.0])
            add_event(db, incident, 1.0, "opened", "kept")
        with pytest.raises(RuntimeError), write_tx(db):
            add_event(db, incident, 2.0, "note", "rolled back")
            raise RuntimeError("boom")
        captured = take_captured(db)
        assert captured is not None
        assert [event[5] for event in captured] == ["kept"]
        assert take_captured(db) == []
    finally:
        db.close()


def test_state_check_checks_what_applies_and_backup_points_at_pg_dump(
    tmp_path: Path, postgres_url: str
) -> None:
    _config(tmp_path)
    password = _password(postgres_url)
    assert run_cli(["--db", postgres_url, "run"], cwd=tmp_path).code == 0
    healthy = run_cli(["--db", postgres_url, "state", "check"], cwd=tmp_path)
    assert healthy.code == 0, healthy.stdout + healthy.stderr
    assert healthy.stdout.startswith("ok: postgresql://incident:***@")
    with psycopg.connect(postgres_url) as conn:
        conn.execute(
            "INSERT INTO notifications (channel, event, status, message, created_at,"
            " next_attempt_at) VALUES ('hook', 'storm', 'pending', '{}', 1, 1)"
        )
    backlog = run_cli(["--db", postgres_url, "state", "check", "--json"], cwd=tmp_path)
    assert backlog.code == 1
    report = backlog.json()
    assert report["schema"]["pending"] == []
    assert [p.split(":")[0] for p in report["problems"]] == ["outbox backlog"]
    backup = run_cli(["--db", postgres_url, "state", "backup", str(tmp_path / "b")], cwd=tmp_path)
    assert backup.code == 1 and backup.stderr.count("\n") == 1
    assert "pg_dump" in backup.stderr
    assert not (tmp_path / "b").exists()
    for result in (healthy, backlog, backup):
        assert password not in result.stdout + result.stderr
