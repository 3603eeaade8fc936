"""`incident state check` and `incident state backup`: the state file's health, read without
changing it, and an online copy through SQLite's backup API."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from incident_cli.store.database import BUSY_TIMEOUT_MS, Database

# A lease may run out a little before the next tick takes the row back: only a claim this long
# past its lease counts as stuck.
CLAIM_GRACE = 300.0
# The oldest pending notification older than this is a problem (channels are down or notify
# does not run).
OUTBOX_MAX_AGE = 3600.0
# Less free space than this beside the DB is a problem (a tick that cannot write exits 75).
MIN_FREE_BYTES = 64 * 1024 * 1024


@dataclass
class StateReport:
    """What `state check` found: problems (one line each) and the facts it measured."""

    path: str
    problems: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


def _read_only(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(
        f"file:{path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None
    )
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return conn


def _count(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...] = ()) -> int:
    return int(conn.execute(sql, params).fetchone()[0])


def check_state_file(path: Path, now: float) -> StateReport:
    """Integrity, schema version, orphaned rows, stuck claims, outbox order, backlog and disk
    space of the state DB at `path`. Never writes to it."""
    from incident_cli.store.migrations import migrations

    report = StateReport(str(path))
    if not path.is_file():
        report.problems.append(f"no state DB at {path}")
        return report
    try:
        conn = _read_only(path)
    except sqlite3.Error as exc:
        report.problems.append(f"cannot open {path}: {exc}")
        return report
    try:
        _check(conn, report, now, migrations)
    except sqlite3.DatabaseError as exc:
        report.problems.append(f"cannot read {path}: {exc}")
    finally:
        conn.close()
    with contextlib.suppress(OSError):
        st = os.statvfs(path.parent)
        free = st.f_bavail * st.f_frsize
        report.facts["disk_free_bytes"] = free
        if free < MIN_FREE_BYTES:
            report.problems.append(
                f"disk: {free // (1024 * 1024)} MiB free beside the DB"
                f" (less than {MIN_FREE_BYTES // (1024 * 1024)} MiB)"
            )
    return report


def check_postgres(db: Database, now: float) -> StateReport:
    """What `state check` can check of a PostgreSQL state DB: its schema, stuck claims, outbox
    order and backlog. Page integrity and disk space are the server's to watch; its foreign
    keys are enforced, so no row can be orphaned."""
    from incident_cli.store.migrations import migrations

    report = StateReport(db.where())
    report.facts["integrity"] = "not checked: the server's own (amcheck, pg_checksums)"
    try:
        _check(db.conn, report, now, migrations, db)
    except sqlite3.DatabaseError as exc:
        report.problems.append(f"cannot read {db.where()}: {exc}")
    return report


def _check(
    conn: sqlite3.Connection,
    report: StateReport,
    now: float,
    migrations: Any,
    postgres: Database | None = None,
) -> None:
    problems = report.problems
    if postgres is None:
        integrity = [row[0] for row in conn.execute("PRAGMA integrity_check(20)")]
        report.facts["integrity"] = "ok" if integrity == ["ok"] else integrity
        if integrity != ["ok"]:
            problems.extend(f"integrity: {line}" for line in integrity)
            return  # what follows would read a damaged file
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        table = migrations.table
    else:
        tables = {
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables"
                " WHERE table_schema = current_schema()"
            )
        }
        table = migrations.pg_table
    known = [m.name for m in migrations._migrations]
    applied: set[str] = set()
    if table in tables:
        applied = {
            r[0]
            for r in conn.execute(
                f"SELECT name FROM {table} WHERE migration_set = ?", (migrations.name,)
            )
        }
    unknown = sorted(applied - set(known))
    pending = [name for name in known if name not in applied]
    report.facts["schema"] = {"applied": len(applied), "known": len(known), "pending": pending}
    if unknown:
        problems.append(
            f"schema: written by a newer incident (unknown migrations: {', '.join(unknown)})"
        )
    if pending:
        # The next command that opens it applies them; a check names them all the same.
        problems.append(f"schema: {len(pending)} migration(s) not applied: {', '.join(pending)}")
    if "incidents" not in tables:
        return
    orphans = [] if postgres is not None else conn.execute("PRAGMA foreign_key_check").fetchall()
    report.facts["orphaned_rows"] = len(orphans)
    by_table: dict[str, int] = {}
    for row in orphans:
        by_table[row[0]] = by_table.get(row[0], 0) + 1
    for table, n in sorted(by_table.items()):
        problems.append(f"orphaned rows: {n} in {table} point at a row that is gone")
    stale = now - CLAIM_GRACE
    stuck_actions = _count(
        conn,
        "SELECT count(*) FROM actions WHERE status = 'running' AND"
        " ((lease_until IS NOT NULL AND lease_until < ?)"
        " OR (lease_until IS NULL AND (verify_until IS NULL OR verify_until < ?)))",
        (stale, stale),
    )
    stuck_outbox = _count(
        conn,
        "SELECT count(*) FROM notifications WHERE status = 'pending'"
        " AND lease_until IS NOT NULL AND lease_until < ?",
        (stale,),
    )
    report.facts["stuck_actions"] = stuck_actions
    report.facts["stuck_notifications"] = stuck_outbox
    if stuck_actions:
        problems.append(
            f"stuck claims: {stuck_actions} action(s) running more than"
            f" {int(CLAIM_GRACE)} s past their lease (recover takes them back)"
        )
    if stuck_outbox:
        problems.append(
            f"stuck claims: {stuck_outbox} notification(s) leased more than"
            f" {int(CLAIM_GRACE)} s past their lease (notify takes them back)"
        )
    out_of_order = _count(
        conn,
        "SELECT count(*) FROM notifications n WHERE n.status = 'sent'"
        " AND n.incident_id IS NOT NULL AND EXISTS (SELECT 1 FROM notifications e"
        " WHERE e.incident_id = n.incident_id AND e.channel = n.channel"
        " AND e.id < n.id AND e.status = 'pending')",
    )
    report.facts["outbox_out_of_order"] = out_of_order
    if out_of_order:
        problems.append(
            f"outbox order: {out_of_order} notification(s) sent before an earlier one"
            " of the same incident and channel"
        )
    pending_rows, oldest = conn.execute(
        "SELECT count(*), min(created_at) FROM notifications WHERE status = 'pending'"
    ).fetchone()
    age = max(now - oldest, 0.0) if oldest is not None else None
    report.facts["outbox_pending"] = int(pending_rows)
    report.facts["outbox_oldest_age_seconds"] = round(age, 1) if age is not None else None
    if age is not None and age > OUTBOX_MAX_AGE:
        problems.append(
            f"outbox backlog: {pending_rows} pending, the oldest {int(age // 60)} min old"
            f" (more than {int(OUTBOX_MAX_AGE // 60)} min)"
        )


class BackupExists(FileExistsError):
    """The backup's target exists: a backup never overwrites."""


def backup_state_file(source: Path, target: Path) -> int:
    """Copy the DB at `source` to a new file `target` (created 0600, never through a symbolic
    link, never over an existing file) with SQLite's online backup API: one consistent snapshot
    while ticks keep writing. Returns the bytes written. On any failure the target is removed."""
    if not source.is_file():
        raise FileNotFoundError(2, "no state DB", str(source))
    fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    try:
        src = _read_only(source)
        try:
            dst = sqlite3.connect(str(target), isolation_level=None)
            try:
                # One step (pages=-1): the whole copy is one read transaction, so it is one
                # snapshot; in WAL mode that never blocks a tick's writes.
                src.backup(dst, pages=-1)
                # A copy that stands alone: no -wal beside it to lose.
                dst.execute("PRAGMA journal_mode = DELETE")
            finally:
                dst.close()
        finally:
            src.close()
        with open(target, "rb") as fh:
            os.fsync(fh.fileno())
    except BaseException:
        for suffix in ("", "-journal", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                os.unlink(f"{target}{suffix}")
        raise
    return os.path.getsize(target)
