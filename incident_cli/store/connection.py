"""Opening the state DB (a SQLite file: WAL, 0600 in a 0700 directory; or a PostgreSQL URL),
migrated, and the tick lock."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import sqlite3
import stat
import time
from pathlib import Path
from typing import TYPE_CHECKING

from incident_cli.errors import IncidentError, LockBusy, UnsafeState

if TYPE_CHECKING:
    from incident_cli.store.postgres import PgTickLock
from incident_cli.store.database import BUSY_TIMEOUT_MS, Database, write_tx
from incident_cli.store.migrations import migrations


def make_private_dirs(directory: Path) -> None:
    """`mkdir -p` where every directory it creates is 0700, whatever the umask (Path.mkdir
    gives the parents it creates the umask's mode, drwxrwxrwx under umask 000)."""
    missing = []
    current = directory
    while not os.path.lexists(current) and current != current.parent:
        missing.append(current)
        current = current.parent
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o700)
            os.chmod(path, 0o700)


def _refuse_unsafe(path: Path, what: str, st: os.stat_result) -> None:
    """As ssh does for its keys: the state is refused unless it is owned by this user (or by
    root) and nobody else can write it, since whoever can write it picks what `recover` does."""
    euid = os.geteuid()
    if st.st_uid not in (euid, 0):
        raise UnsafeState(
            f"refusing the {what} {path}: it is owned by uid {st.st_uid}, not by this user"
            f" (uid {euid})"
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        fix = f"run: chmod go-w {path}"
        if stat.S_ISDIR(st.st_mode) and (st.st_mode & stat.S_ISVTX or st.st_uid != euid):
            # A shared directory such as /tmp: it is not this user's to chmod.
            fix = (
                "keep the DB in a private directory instead, e.g."
                " --db ~/.local/state/incident/incident.db (or state.db in the config)"
            )
        raise UnsafeState(
            f"refusing the {what} {path}: it is writable by group or others"
            f" (mode {stat.S_IMODE(st.st_mode):04o}); {fix}"
        )


def check_state_path(path: Path, what: str) -> None:
    """Refuse a state file that is a symbolic link, not ours, or writable by others. A file
    that does not exist yet passes (it is created 0600 without following a link)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise UnsafeState(f"refusing the {what} {path}: it is a symbolic link")
    _refuse_unsafe(path, what, st)


def check_state_dir(directory: Path) -> None:
    """Refuse the directory that holds the state (the DB's, wherever that is: /var/lib/incident
    or the config's directory) when someone else could add, replace or link files in it."""
    try:
        st = os.stat(directory)
    except FileNotFoundError:
        return
    _refuse_unsafe(directory, "state directory", st)


def check_state(db_path: Path) -> None:
    """The DB's directory, the DB, its -wal and -shm and the lock file: see check_state_path."""
    check_state_dir(db_path.parent)
    check_state_path(db_path, "state DB")
    for suffix, what in (("-wal", "state DB's WAL"), ("-shm", "state DB's shared memory")):
        check_state_path(Path(f"{db_path}{suffix}"), f"{what} file")
    check_state_path(Path(f"{db_path}.lock"), "lock file")


def _create_private(path: Path) -> None:
    """Create the DB file with mode 0600 before SQLite does (SQLite gives WAL/SHM the same
    mode), never through a symbolic link."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return
    os.close(fd)


def is_url(path: str | Path) -> bool:
    """A PostgreSQL URL rather than a SQLite file (postgresql:// or postgres://)."""
    return str(path).startswith(("postgresql://", "postgres://"))


def open_postgres(
    url: str, *, password: str | None = None, migrate: bool = True, host: str | None = None
) -> Database:
    """Connect to the PostgreSQL state DB at `url` as `host` and apply pending migrations."""
    from incident_cli.store.postgres import connect

    db = Database(connect(url, password, host), "postgresql", url)
    if migrate and migrations.pending(db):
        with write_tx(db):
            migrations.apply(db)
    return db


def open_db(
    path: str | Path,
    *,
    migrate: bool = True,
    password: str | None = None,
    host: str | None = None,
) -> Database:
    """Open (creating 0600 if needed) the state DB in WAL mode and apply pending migrations.
    A state DB, directory or companion file someone else could write is refused (exit 78).
    A postgresql:// URL opens PostgreSQL instead (`password` when the URL has none), its
    session named for `host` (which the tick lock's holder is known by)."""
    if is_url(path):
        return open_postgres(str(path), password=password, migrate=migrate, host=host)
    if str(path) == ":memory:":
        conn = sqlite3.connect(":memory:", isolation_level=None)
    else:
        target = Path(path)
        try:
            make_private_dirs(target.parent)
            check_state(target)
            _create_private(target)
        except OSError as exc:
            raise IncidentError(f"cannot create the state DB {target}: {exc.strerror}") from None
        conn = sqlite3.connect(str(target), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    # What sqlite-utils' Database sets on a connection it wraps.
    conn.execute("PRAGMA recursive_triggers = ON")
    db = Database(conn)
    if str(path) != ":memory:":
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        if mode != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
    if migrate and migrations.pending(db):
        with write_tx(db):
            migrations.apply(db)
    return db


class TickLock:
    """A flock on `<db>.lock` that serialises ticks; `wait` seconds before giving up (exit 75)."""

    def __init__(self, db_path: str | Path, wait: float = 0.0) -> None:
        self.path = Path(f"{db_path}.lock")
        self.wait = wait
        self._fd: int | None = None

    def __enter__(self) -> TickLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        try:
            make_private_dirs(self.path.parent)
            check_state_dir(self.path.parent)
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnsafeState(
                    f"refusing the lock file {self.path}: it is a symbolic link"
                ) from None
            raise IncidentError(f"cannot open the lock file {self.path}: {exc.strerror}") from None
        try:
            _refuse_unsafe(self.path, "lock file", os.fstat(fd))
        except UnsafeState:
            os.close(fd)
            raise
        deadline = time.monotonic() + max(self.wait, 0.0)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise LockBusy(
                        f"another tick holds the lock {self.path}; try again next tick"
                    ) from None
                time.sleep(min(0.1, max(deadline - time.monotonic(), 0.01)))
                continue
            self._fd = fd
            return

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def tick_lock(
    db: Database, path: str, wait: float = 0.0, host: str | None = None
) -> TickLock | PgTickLock:
    """The lock that serialises ticks: a flock beside a SQLite file; on PostgreSQL a session
    advisory lock, shared by every host that ticks against the same database, with a lease
    `host` renews while it holds it."""
    if db.is_postgres:
        from incident_cli.store.postgres import PgTickLock

        return PgTickLock(db.conn, wait, host)  # type: ignore[arg-type]
    return TickLock(path, wait)


def db_size(db: Database, path: str | None) -> int:
    """Bytes on disk: the DB file plus its WAL (which can be most of it between checkpoints);
    on PostgreSQL, the database's size."""
    if db.is_postgres:
        return int(db.conn.execute("SELECT pg_database_size(current_database())").fetchone()[0])
    if path and path != ":memory:":
        total = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):  # no WAL file right after a checkpoint
                total += os.path.getsize(f"{path}{suffix}")
        return total
    return page_bytes(db)


def page_bytes(db: Database) -> int:
    """The DB's size as SQLite counts it (pages in use and free); PostgreSQL's own count."""
    if db.is_postgres:
        return db_size(db, None)
    page_count = db.conn.execute("PRAGMA page_count").fetchone()[0]
    page_size = db.conn.execute("PRAGMA page_size").fetchone()[0]
    return int(page_count * page_size)


def vacuum_db(db: Database) -> None:
    """Rewrite the file without free pages, then empty the WAL. Not inside a transaction."""
    db.conn.execute("VACUUM")
    if db.is_postgres:
        return
    db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
