"""The state DB handle and its transactions: the boundaries every write uses."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import sqlite_utils


class Database:
    """The state DB: one sqlite3 connection and the few helpers the code uses on it.

    The same surface as sqlite-utils' Database for what `incident` calls (`conn`, `query`,
    `execute`, `executescript`, `close`). sqlite-utils itself (its table API, its Migrations) is
    imported and wrapped around the same connection only when something asks for it: importing
    it costs ~30 ms, more than everything else an idle tick does, and a tick whose migrations are
    current never needs it. Anything else (`db.table_names()`, `db["incidents"]`) is passed on
    to that sqlite-utils Database.
    """

    def __init__(self, conn: sqlite3.Connection, dialect: str = "sqlite", url: str = "") -> None:
        self.conn = conn
        # "sqlite", or "postgresql" when conn is store.postgres.PgConnection (the same methods).
        self.dialect = dialect
        self.url = url  # the PostgreSQL URL (with its password: never print it, see `where`)
        self._utils: sqlite_utils.Database | None = None
        # Called after every COMMIT of write_tx (the event log writes what the commit kept).
        self.after_commit: list[Callable[[], None]] = []

    @property
    def utils(self) -> sqlite_utils.Database:
        """sqlite-utils' Database on this connection (imported on first use)."""
        if self._utils is None:
            import sqlite_utils

            self._utils = sqlite_utils.Database(self.conn, execute_plugins=False)
        return self._utils

    def query(
        self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Rows of a SELECT as dicts (what sqlite-utils' `query` gives for one)."""
        cursor = self.conn.execute(sql, params if params is not None else ())
        keys = [d[0] for d in cursor.description]
        if len(set(keys)) != len(keys):
            from sqlite_utils.utils import dedupe_keys

            keys = dedupe_keys(keys)
        return (dict(zip(keys, row, strict=True)) for row in cursor)

    def execute(
        self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None
    ) -> sqlite3.Cursor:
        return self.conn.execute(sql, params if params is not None else ())

    def executescript(self, sql: str) -> Any:
        if self.dialect != "sqlite":
            return self.conn.executescript(sql)
        return self.utils.executescript(sql)

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    def where(self) -> str:
        """What to call this state DB in output: its file, or its URL with the password masked."""
        if self.is_postgres:
            from incident_cli.redact import mask_url

            return mask_url(self.url)
        return db_file(self) or ":memory:"

    def close(self) -> None:
        self.conn.close()

    if not TYPE_CHECKING:  # for tests and scripts; the package itself uses the methods above

        def __getattr__(self, name: str) -> Any:
            if name.startswith("__"):
                raise AttributeError(name)
            return getattr(self.utils, name)

        def __getitem__(self, name: str) -> Any:
            return self.utils[name]


@contextlib.contextmanager
def write_tx(db: Database) -> Iterator[Database]:
    """One read-modify-write: BEGIN IMMEDIATE takes the write lock before the first read."""
    conn = db.conn
    if conn.in_transaction:
        yield db
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    else:
        conn.execute("COMMIT")
        for hook in db.after_commit:
            hook()


# How long a statement waits for another process's lock before SQLITE_BUSY.
BUSY_TIMEOUT_MS = 10000

# What a failing state DB raises: the CLI and the stages map these to an exit code.
STORE_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error,)

# The name callers use for their transaction boundaries.
transaction = write_tx


def is_busy(exc: BaseException) -> bool:
    """Another process holds the DB: worth retrying on the next tick (exit 75)."""
    return "locked" in str(exc) or "busy" in str(exc)


# SQLite's result codes for a write the disk refused: full, or over a file-size limit (which
# shows as a failed write or a -shm that could not grow).
_NO_SPACE = {
    "SQLITE_FULL",
    "SQLITE_IOERR_WRITE",
    "SQLITE_IOERR_SHMSIZE",
    "SQLITE_IOERR_FSYNC",
    "SQLITE_IOERR_TRUNCATE",
}


def describe_failure(exc: BaseException, path: str | None) -> tuple[int, str]:
    """(exit status, one line) for a state DB error: locked and disk full are worth the next
    tick (75); a damaged file says how to check it and restore; a read-only one what to fix."""
    from incident_cli.errors import ExitStatus

    name = str(getattr(exc, "sqlite_errorname", "") or "")
    where = f"the state DB {path}" if path else "the state DB"
    if type(exc).__name__ == "PgOperationalError":
        return int(ExitStatus.TEMPFAIL), (
            f"{where} failed ({exc}); nothing was half-written, the next tick tries again"
        )
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or (not name and is_busy(exc)):
        return int(ExitStatus.TEMPFAIL), (
            f"{where} is locked by another process for longer than the busy timeout"
            f" ({BUSY_TIMEOUT_MS // 1000} s); nothing was changed, the next tick tries again"
        )
    if name in _NO_SPACE:
        return int(ExitStatus.TEMPFAIL), (
            f"cannot write {where}: no space left (disk full or a file-size limit: {exc});"
            " nothing was half-written, the next tick carries on once there is space"
        )
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
        return int(ExitStatus.PARTIAL_FAILURE), (
            f"{where} is damaged ({exc}): see what is wrong with `incident state check`,"
            " then restore a copy made by `incident state backup` (docs/state.md, Backups)"
        )
    if name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN")):
        return int(ExitStatus.PARTIAL_FAILURE), (
            f"cannot write {where} ({exc}): the state directory, the DB and its -wal and -shm"
            " files must be writable by this user"
        )
    if name.startswith("SQLITE_IOERR"):
        return int(ExitStatus.PARTIAL_FAILURE), (
            f"I/O error on {where} ({exc}, {name}): was its -wal file deleted while a process"
            " had it open, or did the disk fail? Check it with `incident state check`"
        )
    return int(ExitStatus.PARTIAL_FAILURE), f"state DB error: {exc}"


def db_file(db: Database) -> str | None:
    """The file the connection has open (None in memory); a PostgreSQL state DB's URL with its
    password masked."""
    if db.is_postgres:
        return db.where()
    for _seq, name, file in db.conn.execute("PRAGMA database_list"):
        if name == "main":
            return str(file) or None
    return None


def rollback_open(db: Database) -> None:
    """Roll back a transaction a failed step left open (it must not leak into the next)."""
    if db.conn.in_transaction:
        db.conn.execute("ROLLBACK")


@contextlib.contextmanager
def savepoint(db: Database, name: str) -> Iterator[None]:
    """Run the block inside a savepoint that is always rolled back: a dry run's writes go."""
    db.conn.execute(f"SAVEPOINT {name}")
    try:
        yield
    finally:
        db.conn.execute(f"ROLLBACK TO {name}")
        db.conn.execute(f"RELEASE {name}")
