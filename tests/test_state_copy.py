"""`incident state copy --to URL`: a SQLite history moved into an empty PostgreSQL database,
every table and id counter, checked by row counts; a non-empty target refused."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import psycopg
import pytest

from incident_cli.store.connection import open_db
from incident_cli.store.database import Database
from tests.support.binaries import run_cli
from tests.support.history import NOW, History, standard_history
from tests.support.recover import alert, fire, load, recovery_config

pytestmark = pytest.mark.postgres

TABLES = (
    "incidents",
    "alerts",
    "timeline",
    "actions",
    "notifications",
    "rollup_hourly",
    "journeys",
    "heartbeats",
    "host_heartbeats",
    "counters",
    "id_floor",
    "recovery_breaker",
)


def _history(path: Path) -> None:
    h = History.at(path)
    standard_history(h)
    conn = h.db.conn
    # What `archive` and the probes leave: rolled-up hours, a floor above every id left
    # (incidents up to 500 were archived), journey results, a heartbeat.
    conn.execute(
        "INSERT INTO rollup_hourly (hour, severity, alertname, opened, resolved)"
        " VALUES (?, 'critical', 'Old', 7, 7)",
        (NOW - 40 * 86400,),
    )
    conn.execute("INSERT OR REPLACE INTO id_floor (name, value) VALUES ('incidents', 500)")
    conn.executemany(
        "INSERT INTO journeys (journey, at, ok, latency_ms, origin) VALUES (?, ?, ?, ?, 'cli')",
        [("login", NOW - i, i % 2, 12.5) for i in range(5)],
    )
    conn.execute(
        "INSERT INTO heartbeats (command, last_run_at, last_ok_at, last_exit, host) VALUES"
        " ('run', ?, ?, 0, 'a')",
        (NOW, NOW),
    )
    # The recovery breaker open: the copy carries it (a fresh schema starts closed).
    conn.execute(
        "UPDATE recovery_breaker SET opened_at = ?, reason = 'too many fixes' WHERE id = 1",
        (NOW - 60,),
    )
    conn.execute(
        "INSERT INTO host_heartbeats (host, command, last_started_at, last_run_at, last_exit)"
        " VALUES ('a', 'run', ?, ?, 0)",
        (NOW - 1, NOW),
    )
    h.db.close()


def _rows(db: Database, table: str) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in db.conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2")]


def _password(url: str) -> str:
    return url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]


def test_every_row_and_id_counter_arrives_and_ids_continue(
    tmp_path: Path, postgres_url: str
) -> None:
    sqlite_path = tmp_path / "state.db"
    _history(sqlite_path)
    result = run_cli(
        ["--db", str(sqlite_path), "state", "copy", "--to", postgres_url], cwd=tmp_path
    )
    assert result.code == 0, result.stderr
    assert _password(postgres_url) not in result.stdout + result.stderr
    source, target = open_db(sqlite_path), open_db(postgres_url)
    try:
        for table in TABLES:
            count = len(_rows(source, table))
            assert f"  {table}: {count} rows ({count} in the source) ok" in result.stdout
            assert _rows(target, table) == _rows(source, table), table
        top_event = source.conn.execute("SELECT max(id) FROM timeline").fetchone()[0]
        # The next incident opened on PostgreSQL takes the next id after the floor, and its
        # timeline rows come after every copied one.
        config = load(recovery_config(tmp_path, ""))
        opened = fire(target, config, NOW + 60, alert(alertname="NewOnPostgres"))
        assert opened.opened == [501]
        new_events = target.conn.execute(
            "SELECT min(id) FROM timeline WHERE incident_id = 501"
        ).fetchone()[0]
        assert new_events > top_event
    finally:
        source.close()
        target.close()
    assert re.search(r"next ids: incidents 501, alerts \d+, timeline \d+", result.stdout)


def test_a_target_that_holds_a_state_or_tables_of_its_own_is_refused(
    tmp_path: Path, postgres_url: str, postgres_server: Any
) -> None:
    sqlite_path = tmp_path / "state.db"
    _history(sqlite_path)
    argv = ["--db", str(sqlite_path), "state", "copy", "--to", postgres_url]
    assert run_cli(argv, cwd=tmp_path).code == 0
    again = run_cli(argv, cwd=tmp_path)
    assert again.code == 1
    assert "it already holds a state" in again.stderr and again.stderr.count("\n") == 1
    assert _password(postgres_url) not in again.stdout + again.stderr
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT count(*) FROM incidents").fetchone() == (6,)  # not doubled

    other = postgres_server.create_database()
    try:
        url = postgres_server.url(other)
        with psycopg.connect(url) as conn:
            conn.execute("CREATE TABLE customers (id int)")
        refused = run_cli(["--db", str(sqlite_path), "state", "copy", "--to", url], cwd=tmp_path)
        assert refused.code == 1
        assert "tables of its own: customers" in refused.stderr
        with psycopg.connect(url) as conn:
            left = conn.execute("SELECT to_regclass('incidents')").fetchone()
        assert left == (None,)  # nothing was created in someone else's database
    finally:
        postgres_server.drop_database(other)


def test_a_wrong_password_and_a_file_target_are_one_line_each(
    tmp_path: Path, postgres_url: str
) -> None:
    sqlite_path = tmp_path / "state.db"
    _history(sqlite_path)
    password = _password(postgres_url)
    wrong = postgres_url.replace(password, password[::-1])
    failed = run_cli(["--db", str(sqlite_path), "state", "copy", "--to", wrong], cwd=tmp_path)
    assert failed.code == 75
    assert failed.stderr.count("\n") == 1 and "cannot connect to the state DB" in failed.stderr
    assert password not in failed.stderr and password[::-1] not in failed.stderr
    not_url = run_cli(
        ["--db", str(sqlite_path), "state", "copy", "--to", str(tmp_path / "x.db")], cwd=tmp_path
    )
    assert not_url.code == 2 and "not a postgresql:// URL" in not_url.stderr
