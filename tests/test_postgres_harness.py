"""The PostgreSQL test server (tests/support/postgres.py): real, private, unprivileged, and gone
afterwards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.support import postgres
from tests.support.binaries import REPO, wait_until
from tests.support.postgres import PostgresServer


def _uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])  # the real uid; the effective one is the same
    raise AssertionError(f"no Uid line for {pid}")


def _gone(pid: int) -> bool:
    return not postgres.process_alive(pid)


def test_the_server_is_postgresql_15_and_the_url_logs_in_as_an_ordinary_user(
    postgres_server: PostgresServer,
) -> None:
    assert postgres_server.version >= 150000
    assert postgres_server.host == "127.0.0.1"
    assert postgres_server.url("db") == (
        f"postgresql://incident:{postgres_server.password}@127.0.0.1:{postgres_server.port}/db"
    )
    assert postgres_server.password not in repr(postgres_server)
    with psycopg.connect(postgres_server.url(), connect_timeout=10) as conn:
        row = conn.execute(
            "SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
    assert row == ("incident", False)


def test_a_wrong_or_missing_password_is_refused_and_the_superuser_has_no_tcp_login(
    postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", os.devnull)
    s = postgres_server
    for url in (
        f"postgresql://incident:wrong@127.0.0.1:{s.port}/postgres",
        f"postgresql://incident@127.0.0.1:{s.port}/postgres",
        f"postgresql://postgres@127.0.0.1:{s.port}/postgres",
    ):
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(url, connect_timeout=10).close()


def test_a_fresh_database_is_empty_and_owned_by_the_url_user(postgres_url: str) -> None:
    with psycopg.connect(postgres_url, connect_timeout=10) as conn:
        owner = conn.execute(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
        ).fetchone()
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables"
            " WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
        ).fetchone()
    assert owner == ("incident",)
    assert tables == (0,)


def test_a_table_is_written_and_read_back_on_a_new_connection(postgres_url: str) -> None:
    with psycopg.connect(postgres_url) as conn:
        conn.execute("CREATE TABLE incidents (id bigserial PRIMARY KEY, labels jsonb NOT NULL)")
        ids = [
            conn.execute(
                "INSERT INTO incidents (labels) VALUES (%s::jsonb) RETURNING id",
                (json.dumps({"alertname": name}),),
            ).fetchone()
            for name in ("HighLatency", "Down")
        ]
    assert ids == [(1,), (2,)]
    with psycopg.connect(postgres_url) as conn:
        rows = conn.execute("SELECT id, labels->>'alertname' FROM incidents ORDER BY id").fetchall()
    assert rows == [(1, "HighLatency"), (2, "Down")]


def test_two_fresh_databases_are_independent(postgres_server: PostgresServer) -> None:
    first, second = postgres_server.create_database(), postgres_server.create_database()
    try:
        assert first != second
        with psycopg.connect(postgres_server.url(first)) as conn:
            conn.execute("CREATE TABLE only_here (x int)")
            conn.execute("INSERT INTO only_here VALUES (1)")
        with psycopg.connect(postgres_server.url(second)) as conn:
            found = conn.execute("SELECT to_regclass('only_here')").fetchone()
        assert found == (None,)
    finally:
        postgres_server.drop_database(first)
        postgres_server.drop_database(second)
    with postgres_server.admin_connect() as conn:
        left = conn.execute(
            "SELECT count(*) FROM pg_database WHERE datname IN (%s, %s)", (first, second)
        ).fetchone()
    assert left == (0,)


def test_the_server_runs_as_an_unprivileged_user(postgres_server: PostgresServer) -> None:
    server_uid = _uid_of(postgres_server.pid)
    with psycopg.connect(postgres_server.url()) as conn:
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert backend is not None
        assert _uid_of(backend[0]) == server_uid  # read while the session, and its process, live
    with postgres_server.admin_connect() as conn:
        data_directory = conn.execute("SHOW data_directory").fetchone()
    assert data_directory is not None
    assert Path(data_directory[0]).stat().st_uid == server_uid
    if os.geteuid() == 0:
        assert server_uid != 0
    else:
        assert server_uid == os.geteuid()


def test_the_server_listens_on_loopback_only(postgres_server: PostgresServer) -> None:
    with postgres_server.admin_connect() as conn:
        listen = conn.execute("SHOW listen_addresses").fetchone()
        sockets = conn.execute("SHOW unix_socket_directories").fetchone()
    assert listen == ("127.0.0.1",)
    assert sockets == (str(postgres_server.socket_dir),)
    assert postgres_server.socket_dir.stat().st_mode & 0o077 == 0
    # Every listening TCP socket on the port, IPv4 or IPv6, is bound to 127.0.0.1.
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port = local.rsplit(":", 1)
            if state == "0A" and int(port, 16) == postgres_server.port:
                listening.append(address)
    assert listening == ["0100007F"]


@pytest.mark.postgres
def test_a_server_is_stopped_and_deleted_when_its_block_ends_even_on_an_error() -> None:
    postgres.require_postgres()
    with pytest.raises(RuntimeError, match="boom"), postgres.running_postgres() as server:
        with psycopg.connect(server.url()) as conn:
            conn.execute("SELECT 1")
        raise RuntimeError("boom")
    assert _gone(server.pid)
    assert not server.socket_dir.exists()


@pytest.mark.postgres
def test_the_server_dies_with_the_process_that_started_it_and_the_next_start_sweeps_its_dir() -> (
    None
):
    postgres.require_postgres()
    script = (
        "import sys, time\n"
        "from tests.support.postgres import running_postgres\n"
        "with running_postgres() as s:\n"
        "    print(s.pid, s.socket_dir, flush=True)\n"
        "    time.sleep(120)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        pid_text, directory = child.stdout.readline().split()
        child.send_signal(signal.SIGKILL)  # no finaliser, no atexit: only the kernel can help
        child.wait(timeout=10)
        wait_until(lambda: _gone(int(pid_text)), timeout=30)
        assert Path(directory).exists()
        postgres.remove_stale_dirs(Path(directory).parent)
        assert not Path(directory).exists()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_without_the_binaries_the_tests_fail_unless_told_to_skip(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(postgres, "find_bindir", lambda: None)
    monkeypatch.delenv(postgres.SKIP_VARIABLE, raising=False)
    with pytest.raises(pytest.fail.Exception, match="apt-get install postgresql"):
        postgres.require_postgres()
    monkeypatch.setenv(postgres.SKIP_VARIABLE, "1")
    with pytest.raises(pytest.skip.Exception):
        postgres.require_postgres()
    with pytest.raises(postgres.PostgresNotInstalled), postgres.running_postgres():
        pass
