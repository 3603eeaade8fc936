"""Shared fixtures: every test runs with its config, DB and environment inside tmp_path."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from incident_cli.config.env import all_names
from incident_cli.store.database import Database
from tests.support import backend, postgres

# Variables of the user's environment that would change what `incident` does: the behaviour
# overrides, the locations and the built-in channels' variables: config.env.all_names().
_INCIDENT_VARS = all_names()


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate and key for 127.0.0.1, made with the `openssl` command."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in _INCIDENT_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NO_COLOR", "1")
    yield


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[postgres.PostgresServer]:
    """One real PostgreSQL server for the whole run (tests/support/postgres.py). Without the
    binaries: skipped with INCIDENT_SKIP_POSTGRES=1, an error otherwise."""
    postgres.require_postgres()
    with postgres.running_postgres() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: postgres.PostgresServer) -> Iterator[str]:
    """postgresql://incident:PASSWORD@127.0.0.1:PORT/test_XXXX: a fresh empty database that the
    URL's user owns, dropped after the test."""
    name = postgres_server.create_database()
    yield postgres_server.url(name)
    postgres_server.drop_database(name)


@pytest.fixture(scope="session")
def migrated_template(postgres_server: postgres.PostgresServer) -> str:
    """A database with every migration applied, copied for each test that wants one (a copy
    is much faster than migrating)."""
    from incident_cli.store.connection import open_db

    name = postgres_server.create_database()
    open_db(postgres_server.url(name)).close()
    return name


@pytest.fixture(params=["sqlite", "postgres"])
def state_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Where the state DB is, once per backend: a SQLite file in tmp_path, and the URL of a
    fresh, migrated PostgreSQL database on the session's server (dropped afterwards)."""
    if request.param == "sqlite":
        yield str(tmp_path / "state.db")
        return
    server: postgres.PostgresServer = request.getfixturevalue("postgres_server")
    name = server.create_database(template=request.getfixturevalue("migrated_template"))
    yield server.url(name)
    server.drop_database(name)


@pytest.fixture
def both_backends(state_db: str, tmp_path: Path) -> Iterator[str]:
    """Run the test once per backend: the helpers that open `tmp_path / "state.db"` (History,
    db_for, make_setup, the in-process CLI) open `state_db` instead."""
    backend.use(tmp_path, state_db)
    yield state_db
    backend.forget(tmp_path)


@pytest.fixture
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """The test's state DB, opened and migrated: tmp_path/state.db, or with `both_backends`
    the backend's (the one place a test opens its DB through a fixture)."""
    from incident_cli.store.connection import open_db

    if "both_backends" in request.fixturenames:
        request.getfixturevalue("both_backends")
    opened = open_db(backend.locate(tmp_path / "state.db"))
    yield opened
    opened.close()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "postgres_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)
    if os.environ.get("INCIDENT_SKIP_INTEGRATION") == "1":
        skip = pytest.mark.skip(reason="INCIDENT_SKIP_INTEGRATION=1")
        for item in items:
            if "integration" in item.keywords:
                item.add_marker(skip)
