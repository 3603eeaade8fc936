"""`incident state check` and `incident state backup`, run as cron runs them."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.binaries import CliResult, cli_env, run_cli


def now() -> float:
    return time.time()


def make_db(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    db = state / "incident.db"
    result = run_cli(["--db", str(db), "list"], cwd=tmp_path)
    assert result.code == 0, result.stderr
    return db


def add_incident(db: Path, incident_id: int = 1) -> None:
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(
            "INSERT INTO incidents (id, key, title, status, severity, rule, handler, source,"
            " labels, annotations, opened_at, updated_at)"
            " VALUES (?, 'k', 't', 'open', 'critical', 'r', 'h', 'prom', '{}', '{}', ?, ?)",
            (incident_id, now() - 60, now() - 60),
        )
    conn.close()


def notification(conn: sqlite3.Connection, status: str, **extra: object) -> None:
    row = {
        "incident_id": 1,
        "channel": "hook",
        "event": "firing",
        "status": status,
        "message": "{}",
        "created_at": now() - 30,
        "next_attempt_at": now() - 30,
        **extra,
    }
    cols = ", ".join(row)
    marks = ", ".join("?" for _ in row)
    conn.execute(f"INSERT INTO notifications ({cols}) VALUES ({marks})", tuple(row.values()))


def running_action(conn: sqlite3.Connection, started: float, lease_until: float) -> None:
    conn.execute(
        "INSERT INTO actions (incident_id, kind, status, planned_at, due_at, started_at,"
        " lease_until) VALUES (1, 'command', 'running', ?, ?, ?, ?)",
        (started, started, started, lease_until),
    )


def check(tmp_path: Path, db: Path, *extra: str) -> CliResult:
    return run_cli(["--db", str(db), "state", "check", *extra], cwd=tmp_path)


def test_a_healthy_state_passes(tmp_path: Path) -> None:
    db = make_db(tmp_path)
    add_incident(db)
    result = check(tmp_path, db)
    assert result.code == 0, result.stdout + result.stderr
    assert result.stdout.startswith(f"ok: {db}: integrity ok, schema current")
    as_json = json.loads(check(tmp_path, db, "--json").stdout)
    assert as_json["ok"] is True
    assert as_json["problems"] == []
    assert as_json["integrity"] == "ok"
    assert as_json["schema"]["pending"] == []
    assert as_json["disk_free_bytes"] > 0


def test_each_problem_is_one_line_and_exit_1(tmp_path: Path) -> None:
    db = make_db(tmp_path)
    add_incident(db)
    conn = sqlite3.connect(db)
    with conn:
        # A recovery attempt whose tick died an hour ago, its lease long gone.
        running_action(conn, now() - 3600, now() - 3000)
        # A notification still leased long after its lease ran out.
        notification(conn, "pending", lease_until=now() - 3000, lease_token="x")
        # A later one of the same chain marked sent while the first waits.
        notification(conn, "sent", sent_at=now() - 20)
        # A pending one two hours old.
        notification(conn, "pending", channel="mail", created_at=now() - 7200)
    conn.execute("PRAGMA foreign_keys = OFF")
    with conn:
        conn.execute(
            "INSERT INTO timeline (incident_id, at, kind, actor, message)"
            " VALUES (99, 0, 'opened', 'x', 'gone')"
        )
    conn.close()
    result = check(tmp_path, db)
    assert result.code == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert all(line.startswith("problem: ") for line in lines), lines
    text = result.stdout
    assert "orphaned rows: 1 in timeline" in text
    assert "stuck claims: 1 action(s) running" in text
    assert "stuck claims: 1 notification(s) leased" in text
    assert "outbox order: 1 notification(s) sent before an earlier one" in text
    assert "outbox backlog: 2 pending, the oldest 120 min old" in text
    assert len(lines) == 5
    facts = json.loads(check(tmp_path, db, "--json").stdout)
    assert facts["ok"] is False
    assert facts["stuck_actions"] == 1
    assert facts["outbox_pending"] == 2


def test_a_fresh_lease_is_not_stuck(tmp_path: Path) -> None:
    db = make_db(tmp_path)
    add_incident(db)
    conn = sqlite3.connect(db)
    with conn:
        running_action(conn, now(), now() + 60)
        notification(conn, "pending", lease_until=now() - 10, lease_token="x")
    conn.close()
    result = check(tmp_path, db)
    assert result.code == 0, result.stdout


def test_schema_behind_and_ahead(tmp_path: Path) -> None:
    db = make_db(tmp_path)
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("DELETE FROM _sqlite_migrations WHERE name = 'm010_followups'")
        conn.execute(
            "INSERT INTO _sqlite_migrations (migration_set, name, applied_at)"
            " VALUES ('incident', 'm999_future', 'x')"
        )
    conn.close()
    result = check(tmp_path, db)
    assert result.code == 1
    assert "schema: written by a newer incident (unknown migrations: m999_future)" in result.stdout
    assert "schema: 1 migration(s) not applied: m010_followups" in result.stdout
    # The check changed nothing: the migration is still missing.
    conn = sqlite3.connect(db)
    names = {r[0] for r in conn.execute("SELECT name FROM _sqlite_migrations")}
    conn.close()
    assert "m010_followups" not in names


def test_a_corrupted_page_is_found_without_a_traceback(tmp_path: Path) -> None:
    db = make_db(tmp_path)
    add_incident(db)
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page = conn.execute("PRAGMA page_size").fetchone()[0]
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'incidents'").fetchone()[0]
    conn.close()
    with open(db, "r+b") as fh:
        fh.seek((root - 1) * page)
        fh.write(b"\xa5" * page)
    result = check(tmp_path, db)
    assert result.code == 1
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stdout.startswith("problem: ")
    assert "integrity" in result.stdout or "malformed" in result.stdout


def test_a_missing_db_is_a_problem_and_is_not_created(tmp_path: Path) -> None:
    db = tmp_path / "nothing" / "incident.db"
    result = check(tmp_path, db)
    assert result.code == 1
    assert result.stdout == f"problem: no state DB at {db}\n"
    assert not db.exists()


def test_backup_is_a_private_consistent_copy_while_ticks_write(tmp_path: Path) -> None:
    db = make_db(tmp_path)
    add_incident(db)
    # Another process writes in a loop (as ticks do) while the backup runs.
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, time\n"
            "c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=10)\n"
            "end = time.time() + 3\n"
            "while time.time() < end:\n"
            '    c.execute("INSERT INTO timeline (incident_id, at, kind, actor, message)'
            " VALUES (1, 0, 'note', 'w', 'x')\")\n",
            str(db),
        ],
    )
    try:
        time.sleep(0.3)
        copy = tmp_path / "copy.db"
        result = run_cli(["--db", str(db), "state", "backup", str(copy)], cwd=tmp_path)
        assert writer.poll() is None, "the writer finished before the backup ran"
    finally:
        writer.wait(timeout=30)
    assert writer.returncode == 0
    assert result.code == 0, result.stderr
    assert result.stdout.startswith(f"backed up {db} to {copy} (")
    assert stat.S_IMODE(os.stat(copy).st_mode) == 0o600
    assert not Path(f"{copy}-wal").exists()
    checked = check(tmp_path, copy)
    assert checked.code == 0, checked.stdout
    conn = sqlite3.connect(copy)
    assert conn.execute("SELECT count(*) FROM incidents").fetchone()[0] == 1
    conn.close()


def test_backup_mode_is_0600_whatever_the_umask(tmp_path: Path) -> None:
    db = make_db(tmp_path)
    copy = tmp_path / "copy.db"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, sys; os.umask(0); from incident_cli.cli.main import main; main()",
            "--db",
            str(db),
            "state",
            "backup",
            str(copy),
        ],
        cwd=tmp_path,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(os.stat(copy).st_mode) == 0o600


@pytest.mark.parametrize("kind", ["file", "symlink"])
def test_backup_never_overwrites_nor_follows_a_link(tmp_path: Path, kind: str) -> None:
    db = make_db(tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    target = tmp_path / "copy.db"
    if kind == "file":
        target.write_text("keep me\n")
    else:
        target.symlink_to(victim)
    result = run_cli(["--db", str(db), "state", "backup", str(target)], cwd=tmp_path)
    assert result.code == 1
    assert result.stderr == f"incident: {target} exists: a backup never overwrites a file\n"
    assert victim.read_text() == "keep me\n"
    assert target.read_text() == "keep me\n"


def test_backup_of_a_missing_db_says_so(tmp_path: Path) -> None:
    result = run_cli(
        ["--db", str(tmp_path / "none.db"), "state", "backup", str(tmp_path / "c.db")],
        cwd=tmp_path,
    )
    assert result.code == 1
    assert "cannot back up: no state DB" in result.stderr
    assert not (tmp_path / "c.db").exists()
