"""A throwaway PostgreSQL server for the tests: Debian's binaries, a temporary directory, a free
loopback port, and nothing left behind.

`running_postgres()` starts one and stops and deletes it when the `with` block ends; the session
fixture `postgres_server` in tests/conftest.py holds one for the whole run, and `postgres_url`
gives each test a fresh empty database on it.

- Binaries: /usr/lib/postgresql/<version>/bin, the newest version there. Debian's `postgresql`
  package puts them there, not on PATH (a /usr/local/bin/pg_ctl, where one exists, is a link
  someone made by hand). `postgres` is run directly rather than through `pg_ctl`, so that it
  stays our child and can be told to stop when we die.
- Root: PostgreSQL refuses to run as root, so when the tests run as root (as CI does), initdb and
  the server run as the `postgres` system user that the package creates (`nobody` without it),
  through `setpriv`. Otherwise they run as the tests' own user.
- Access: TCP on 127.0.0.1 only, with a scram-sha-256 password, for the role `incident`: not a
  superuser, the owner of each database it is given (as in production). The superuser `postgres`
  is reachable only through the Unix socket in the temporary directory (mode 0700, trust), for
  the harness's own CREATE and DROP DATABASE.
- Speed: fsync, synchronous_commit and full_page_writes are off; the data does not outlive the
  run.
- Cleanup: the server is stopped (fast shutdown) and its directory deleted when the `with` block
  ends, even on an exception; at interpreter exit (atexit) if that did not happen; and the
  kernel sends the server SIGINT when the process that started it dies, even by SIGKILL
  (`setpriv --pdeathsig`: the thread that started it must live as long as the server, as
  pytest's main thread does). A directory left behind by such a death is removed by the next
  start.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from tests.support.binaries import free_port

if TYPE_CHECKING:
    import psycopg
    from psycopg.rows import TupleRow

SKIP_VARIABLE = "INCIDENT_SKIP_POSTGRES"
INSTALL_ROOT = Path("/usr/lib/postgresql")
APP_USER = "incident"
ADMIN_USER = "postgres"
DIR_PREFIX = "incident-pg-"
OWNER_FILE = "owner.pid"  # the pid of the process that started the server, for the sweep
LOG_FILE = "postgres.log"

SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}


class PostgresNotInstalled(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


def missing_message() -> str:
    return (
        f"PostgreSQL's server binaries (initdb, postgres) are not under {INSTALL_ROOT}/*/bin: "
        "install Debian's postgresql package (apt-get install postgresql; .ci/run does), "
        f"or set {SKIP_VARIABLE}=1 to skip the tests that need a PostgreSQL server"
    )


def find_bindir() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin that has initdb and postgres."""

    def version(bindir: Path) -> tuple[int, ...]:
        try:
            return tuple(int(part) for part in bindir.parent.name.split("."))
        except ValueError:
            return (0,)

    found = [
        bindir
        for bindir in INSTALL_ROOT.glob("*/bin")
        if all(os.access(bindir / name, os.X_OK) for name in ("initdb", "postgres"))
    ]
    return max(found, key=version, default=None)


def require_postgres() -> Path:
    """The binaries' directory; without them the calling test is skipped when
    INCIDENT_SKIP_POSTGRES=1 and fails otherwise, so that CI never skips them silently."""
    import pytest

    bindir = find_bindir()
    if bindir is None:
        if os.environ.get(SKIP_VARIABLE) == "1":
            pytest.skip(f"{SKIP_VARIABLE}=1 and no PostgreSQL server binaries")
        pytest.fail(missing_message(), pytrace=False)
    return bindir


@dataclass(frozen=True)
class PostgresServer:
    """A running server. `user`/`password` are the application role's, for `url()`; the
    superuser is reached with `admin_connect()` through the Unix socket in `socket_dir`."""

    host: str
    port: int
    user: str
    password: str = field(repr=False)
    dbname: str
    socket_dir: Path  # also the server's temporary directory: data/, the log, the socket
    pid: int  # the postmaster's
    version: int  # server_version_num, e.g. 150018

    def url(self, dbname: str | None = None) -> str:
        """postgresql://user:password@127.0.0.1:port/dbname, each part URL-quoted."""
        return (
            f"postgresql://{quote(self.user, safe='')}:{quote(self.password, safe='')}"
            f"@{self.host}:{self.port}/{quote(dbname or self.dbname, safe='')}"
        )

    def admin_connect(self, dbname: str = "postgres") -> psycopg.Connection[TupleRow]:
        """A superuser connection in autocommit mode, through the Unix socket."""
        import psycopg

        return psycopg.connect(
            host=str(self.socket_dir),
            port=self.port,
            user=ADMIN_USER,
            dbname=dbname,
            autocommit=True,
            connect_timeout=10,
        )

    def create_database(self, name: str | None = None, template: str | None = None) -> str:
        """A new database owned by `user` (empty, or a copy of `template`); returns its name."""
        from psycopg import sql

        name = name or f"test_{secrets.token_hex(6)}"
        query = sql.SQL("CREATE DATABASE {} OWNER {}").format(
            sql.Identifier(name), sql.Identifier(self.user)
        )
        if template is not None:
            query += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        with self.admin_connect() as conn:
            conn.execute(query)
        return name

    def drop_database(self, name: str) -> None:
        """Drop it, ending whatever connections are still open to it."""
        from psycopg import sql

        with self.admin_connect() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@contextlib.contextmanager
def running_postgres(timeout: float = 60.0) -> Iterator[PostgresServer]:
    """Start a server; stop it and delete its directory when the block ends.

    Raises PostgresNotInstalled without the binaries, RuntimeError (with the server's log) when
    it does not start."""
    bindir = find_bindir()
    if bindir is None:
        raise PostgresNotInstalled(missing_message())
    account = _server_account()
    parent = _temp_parent(account)
    remove_stale_dirs(parent)
    instance = _Instance(Path(tempfile.mkdtemp(prefix=DIR_PREFIX, dir=parent)), account)
    atexit.register(instance.stop)
    try:
        yield instance.start(bindir, timeout)
    finally:
        instance.stop()
        atexit.unregister(instance.stop)


def remove_stale_dirs(parent: Path) -> None:
    """Delete the directories of servers whose starting process died without cleaning up (the
    kernel stopped the server itself). Directories whose owner or server is alive are kept."""
    for base in parent.glob(DIR_PREFIX + "*"):
        try:
            owner = int((base / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue
        if process_alive(owner) or process_alive(_postmaster_pid(base / "data")):
            continue
        shutil.rmtree(base, ignore_errors=True)


# --------------------------------------------------------------------------- internals


class _Instance:
    def __init__(self, base: Path, account: tuple[int, int] | None) -> None:
        self.base = base
        self.account = account
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, bindir: Path, timeout: float) -> PostgresServer:
        base, data = self.base, self.base / "data"
        (base / OWNER_FILE).write_text(f"{os.getpid()}\n")
        if self.account is not None:
            os.chown(base, *self.account)
        initdb = self._spawn(
            [
                *self._as_account(),
                str(bindir / "initdb"),
                f"--pgdata={data}",
                f"--username={ADMIN_USER}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ]
        )
        try:
            initdb.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            initdb.kill()
            initdb.wait()
        if initdb.returncode != 0:
            raise RuntimeError(f"initdb failed (exit {initdb.returncode}):\n{self.log_tail()}")
        deadline = time.monotonic() + timeout
        for _attempt in range(3):  # another process may take the free port before we bind it
            port = free_port()
            if self._serve(bindir, port, deadline):
                return self._ready_server(port)
            if "could not bind" not in self.log_tail():
                break
        raise RuntimeError(f"PostgreSQL did not start:\n{self.log_tail()}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # fast shutdown: ends the sessions, no waiting
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.base, ignore_errors=True)

    def log_tail(self) -> str:
        try:
            return (self.base / LOG_FILE).read_text(errors="replace")[-3000:]
        except OSError:
            return "(no log)"

    def _serve(self, bindir: Path, port: int, deadline: float) -> bool:
        """Start the postmaster on `port`; True once it accepts connections, False if it
        exited."""
        import psycopg

        settings = {**SERVER_SETTINGS, "port": str(port), "unix_socket_directories": str(self.base)}
        argv = [*self._as_account(die_with_parent=True), str(bindir / "postgres")]
        argv += ["-D", str(self.base / "data")]
        for name, value in settings.items():
            argv += ["-c", f"{name}={value}"]
        self.proc = self._spawn(argv)
        while self.proc.poll() is None:
            try:
                psycopg.connect(
                    host=str(self.base), port=port, user=ADMIN_USER, dbname="postgres"
                ).close()
                return True
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"PostgreSQL did not accept connections in time:\n{self.log_tail()}"
                    ) from None
                time.sleep(0.05)
        self.proc = None
        return False

    def _ready_server(self, port: int) -> PostgresServer:
        from psycopg import sql

        assert self.proc is not None
        server = PostgresServer(
            host="127.0.0.1",
            port=port,
            user=APP_USER,
            password=secrets.token_urlsafe(18),
            dbname="postgres",
            socket_dir=self.base,
            pid=self.proc.pid,
            version=0,
        )
        with server.admin_connect() as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(server.user), sql.Literal(server.password)
                )
            )
            row = conn.execute("SHOW server_version_num").fetchone()
        assert row is not None
        return replace(server, version=int(row[0]))

    def _as_account(self, die_with_parent: bool = False) -> list[str]:
        """The setpriv prefix: to the unprivileged account when we are root, and to receive
        SIGINT when our thread dies."""
        options = []
        if self.account is not None:
            uid, gid = self.account
            options += [f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]
        if die_with_parent:
            options.append("--pdeathsig=INT")
        return ["setpriv", *options, "--"] if options else []

    def _spawn(self, argv: list[str]) -> subprocess.Popen[bytes]:
        """Run in the temporary directory, output to the log, in a session of its own (a
        Ctrl-C at the terminal reaches pytest, which stops the server in order)."""
        env = {name: value for name, value in os.environ.items() if not name.startswith("PG")}
        env["LC_ALL"] = "C"
        with (self.base / LOG_FILE).open("ab") as log:
            return subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.base,
                env=env,
                start_new_session=True,
            )


def _server_account() -> tuple[int, int] | None:
    """(uid, gid) to run PostgreSQL as when we are root; None to run it as ourselves."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(name)
            return entry.pw_uid, entry.pw_gid
    raise RuntimeError("running as root, and there is no postgres or nobody user to run PostgreSQL")


def _temp_parent(account: tuple[int, int] | None) -> Path:
    """The temporary directory, or /tmp when the server's account could not reach it."""
    parent = Path(tempfile.gettempdir()).resolve()
    if account is None or all(os.stat(p).st_mode & 0o001 for p in (parent, *parent.parents)):
        return parent
    return Path("/tmp")


def _postmaster_pid(data: Path) -> int:
    try:
        return int((data / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return 0


def process_alive(pid: int) -> bool:
    """True while `pid` runs (a zombie counts as dead)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead: its parent died too and nothing has reaped it yet
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
