"""The schema: numbered migrations applied once each, in the order they were registered."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlite_utils
from incident_cli.store.database import Database
from incident_cli.store.schema_m001 import M001_SQL

MigrationFn = Callable[["sqlite_utils.Database"], None]


@dataclass(frozen=True)
class _Migration:
    """One numbered migration: its function, and the PostgreSQL script that replaces it."""

    name: str
    fn: MigrationFn
    transactional: bool
    postgres: str | None = None  # the script PostgreSQL runs instead of `fn`, if any


class _Migrations:
    """The numbered migrations, registered with `@migrations()` as with sqlite-utils' Migrations.

    Which ones are pending is read with one query on the connection; sqlite-utils' Migrations
    (which records them in `_sqlite_migrations`) is built only to apply them.

    The same functions build a PostgreSQL state DB: each is called with the Database, whose
    `execute` and `executescript` translate SQLite's dialect (INTEGER and REAL columns, an
    `id INTEGER PRIMARY KEY`, IFNULL, INSERT OR IGNORE, ...: see store/postgres.py). Write a new
    migration in plain SQL (`ALTER TABLE actions ADD COLUMN host TEXT`) and it runs on both;
    only what cannot be said in both (triggers) gives `postgres=` a script of its own.
    PostgreSQL records them in `_migrations`, all of a start in one transaction.
    """

    table = "_sqlite_migrations"
    pg_table = "_migrations"

    def __init__(self, name: str) -> None:
        self.name = name
        self._migrations: list[_Migration] = []

    def __call__(
        self, *, name: str | None = None, transactional: bool = True, postgres: str | None = None
    ) -> Callable[[MigrationFn], MigrationFn]:
        def register(fn: MigrationFn) -> MigrationFn:
            self._migrations.append(_Migration(name or fn.__name__, fn, transactional, postgres))
            return fn

        return register

    def applied(self, db: Database) -> set[str]:
        conn = db.conn
        if db.is_postgres:
            found = conn.execute("SELECT to_regclass(?)", (self.pg_table,)).fetchone()
            if found is None or found[0] is None:
                return set()
            rows = conn.execute(
                f"SELECT name FROM {self.pg_table} WHERE migration_set = ?", (self.name,)
            )
            return {row[0] for row in rows}
        exists = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (self.table,)
        ).fetchone()
        if not exists:
            return set()
        rows = conn.execute(f"SELECT name FROM {self.table} WHERE migration_set = ?", (self.name,))
        return {row[0] for row in rows}

    def pending(self, db: Database) -> list[_Migration]:
        done = self.applied(db)
        return [m for m in self._migrations if m.name not in done]

    def apply(self, db: Database, *, stop_before: str | Iterable[str] | None = None) -> None:
        """Apply the pending ones in order (all, or those before `stop_before`)."""
        if db.is_postgres:
            self._apply_postgres(db, stop_before)
            return
        from sqlite_utils import Migrations

        real = Migrations(self.name)
        for m in self._migrations:
            real(name=m.name, transactional=m.transactional)(m.fn)
        real.apply(db.utils, stop_before=stop_before)

    def _apply_postgres(self, db: Database, stop_before: str | Iterable[str] | None) -> None:
        """The pending ones on PostgreSQL, in the caller's write transaction."""
        import time

        from incident_cli.store.postgres import COMPAT_SQL

        stop = {stop_before} if isinstance(stop_before, str) else set(stop_before or ())
        conn = db.conn
        conn.executescript(COMPAT_SQL, raw=True)  # type: ignore[call-arg]
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {self.pg_table} (migration_set TEXT NOT NULL,"
            " name TEXT NOT NULL, applied_at REAL NOT NULL, PRIMARY KEY (migration_set, name))"
        )
        done = self.applied(db)
        for m in self._migrations:
            if m.name in stop:
                break
            if m.name in done:
                continue
            if m.postgres is not None:
                conn.executescript(m.postgres, raw=True)  # type: ignore[call-arg]
            else:
                m.fn(db)  # type: ignore[arg-type]
            conn.execute(
                f"INSERT INTO {self.pg_table} (migration_set, name, applied_at) VALUES (?, ?, ?)",
                (self.name, m.name, time.time()),
            )


migrations = _Migrations("incident")


@migrations()
def m001_initial(db: sqlite_utils.Database) -> None:
    db.executescript(M001_SQL)


@migrations()
def m004_journeys_unique(db: sqlite_utils.Database) -> None:
    # One row per distinct result, so a journeys file that is re-read from the start (truncated
    # or replaced) and a probe that retries `journey record` never count a result twice.
    # A failed result may have no latency; NULLs are distinct in an index, hence the IFNULL.
    db.executescript(
        """
        DELETE FROM journeys WHERE id NOT IN (
            SELECT min(id) FROM journeys GROUP BY journey, at, ok, IFNULL(latency_ms, -1)
        );
        CREATE UNIQUE INDEX journeys_unique ON journeys(journey, at, ok, IFNULL(latency_ms, -1));
        """
    )


@migrations()
def m005_report_rollup(db: sqlite_utils.Database) -> None:
    # `archive` folds deleted incidents into hourly rows (by the UTC hour they opened in) so
    # `report` and the `metrics` counters keep their counts and means. Hourly, not daily:
    # report windows are in hours, so the window edge is off by at most one hour of archived
    # incidents. Sums + counts keep means exact; medians/percentiles cannot be kept.
    db.executescript(
        """
        CREATE TABLE rollup_hourly (
            hour REAL NOT NULL,              -- epoch seconds of the UTC hour's start
            severity TEXT NOT NULL,
            alertname TEXT NOT NULL,         -- '' for storm notifications (no incident)
            opened INTEGER NOT NULL DEFAULT 0,
            resolved INTEGER NOT NULL DEFAULT 0,
            reopened INTEGER NOT NULL DEFAULT 0,
            false_positive INTEGER NOT NULL DEFAULT 0,
            escalated INTEGER NOT NULL DEFAULT 0,
            flapped INTEGER NOT NULL DEFAULT 0,
            mttd_sum REAL NOT NULL DEFAULT 0,
            mttd_count INTEGER NOT NULL DEFAULT 0,
            mtta_sum REAL NOT NULL DEFAULT 0,
            mtta_count INTEGER NOT NULL DEFAULT 0,
            mttr_sum REAL NOT NULL DEFAULT 0,
            mttr_count INTEGER NOT NULL DEFAULT 0,
            recovery_succeeded INTEGER NOT NULL DEFAULT 0,
            recovery_failed INTEGER NOT NULL DEFAULT 0,
            recovery_refused INTEGER NOT NULL DEFAULT 0,
            recovery_skipped INTEGER NOT NULL DEFAULT 0,
            notifications_sent INTEGER NOT NULL DEFAULT 0,
            notifications_dead INTEGER NOT NULL DEFAULT 0,
            notification_latency_sum REAL NOT NULL DEFAULT 0,
            PRIMARY KEY (hour, severity, alertname)
        );
        -- archive: old resolved incidents
        CREATE INDEX incidents_resolved ON incidents(status, resolved_at);
        -- metrics: totals by severity and the outbox by channel, read from the index alone
        CREATE INDEX incidents_severity ON incidents(severity, status);
        CREATE INDEX notifications_channel ON notifications(channel, status);
        """
    )


def inspect(path: Path) -> tuple[set[str], set[str]]:
    """(applied, known) migration names of a state file, read without changing it; raises
    sqlite3.Error (one of STORE_ERRORS) when it cannot be read."""
    import sqlite3

    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        applied = {
            row[0]
            for row in conn.execute(
                "SELECT name FROM _sqlite_migrations WHERE migration_set = ?",
                (migrations.name,),
            )
        }
    finally:
        conn.close()
    return applied, {m.name for m in migrations._migrations}


def pending_migrations(db: Database) -> list[str]:
    return [m.name for m in migrations.pending(db)]


@migrations()
def m006_alerts_uncleared(db: sqlite_utils.Database) -> None:
    # Poll reads the alerts that have not cleared on every tick; keep that read off the history.
    db.execute("CREATE INDEX alerts_uncleared ON alerts(incident_id) WHERE state != 'cleared'")


@migrations()
def m002_action_process(db: sqlite_utils.Database) -> None:
    # The process group a running command leads, so that a later tick can stop it when the
    # tick that started it was killed: the child runs in its own session, so nothing else
    # would. proc_start (Linux /proc start time, in clock ticks) tells that pid from a reuse.
    db.executescript(
        """
        ALTER TABLE actions ADD COLUMN pid INTEGER;
        ALTER TABLE actions ADD COLUMN pgid INTEGER;
        ALTER TABLE actions ADD COLUMN proc_start INTEGER;
        """
    )


# m007 on PostgreSQL: the same table, columns and counting, with its triggers in PL/pgSQL. A
# new PostgreSQL DB has no rows to start the counters from (`state copy` copies them).
M007_POSTGRES = """
CREATE TABLE counters (
    name TEXT NOT NULL, severity TEXT NOT NULL, value BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (name, severity)
);
CREATE FUNCTION counters_count(counter TEXT, sev TEXT, n BIGINT) RETURNS void
LANGUAGE sql AS $f$
    INSERT INTO counters (name, severity, value) VALUES (counter, sev, n)
    ON CONFLICT (name, severity) DO UPDATE SET value = counters.value + excluded.value
$f$;
CREATE FUNCTION counters_incident_inserted() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
    PERFORM counters_count('opened', NEW.severity, 1);
    IF NEW.status = 'resolved' THEN PERFORM counters_count('resolved', NEW.severity, 1); END IF;
    IF NEW.reopen_count > 0 THEN
        PERFORM counters_count('reopened', NEW.severity, NEW.reopen_count);
    END IF;
    RETURN NULL;
END $f$;
CREATE TRIGGER counters_incident_inserted AFTER INSERT ON incidents
    FOR EACH ROW EXECUTE FUNCTION counters_incident_inserted();
CREATE FUNCTION counters_incident_status() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
    PERFORM counters_count(
        CASE WHEN NEW.status = 'resolved' THEN 'resolved' ELSE 'reopened' END, NEW.severity, 1);
    RETURN NULL;
END $f$;
CREATE TRIGGER counters_incident_status AFTER UPDATE OF status ON incidents
    FOR EACH ROW WHEN ((OLD.status = 'resolved') <> (NEW.status = 'resolved'))
    EXECUTE FUNCTION counters_incident_status();
ALTER TABLE heartbeats ADD COLUMN first_run_at DOUBLE PRECISION;
CREATE FUNCTION heartbeats_first_run() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
    IF NEW.first_run_at IS NULL THEN NEW.first_run_at := NEW.last_run_at; END IF;
    RETURN NEW;
END $f$;
CREATE TRIGGER heartbeats_first_run BEFORE INSERT ON heartbeats
    FOR EACH ROW EXECUTE FUNCTION heartbeats_first_run();
"""


@migrations(postgres=M007_POSTGRES)
def m007_counters(db: sqlite_utils.Database) -> None:
    # `metrics` exposes opened/reopened/resolved as Prometheus counters, which must never go
    # down: not when an incident reopens (status leaves 'resolved'), not when a detector raises
    # its severity, not when `archive` deletes it. Counting the incident rows cannot give that,
    # so every change of status is counted as it happens, under the severity the incident has
    # at that moment. Triggers do the counting in the same transaction as the change, whoever
    # writes it (lifecycle, detectors, imports), and deleting rows never touches the counts.
    # The table starts where the old row-derived totals were, so no counter jumps on upgrade
    # (the rollup keeps "incidents reopened at least once", the best count there is of those).
    #
    # heartbeats.first_run_at: `status` must not call a first run that failed a moment ago
    # "never succeeded"; NULL (rows from before this migration) means not known.
    db.executescript(
        """
        CREATE TABLE counters (
            name TEXT NOT NULL,              -- opened | reopened | resolved
            severity TEXT NOT NULL,
            value INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (name, severity)
        ) WITHOUT ROWID;
        INSERT INTO counters (name, severity, value)
        SELECT name, severity, sum(n) FROM (
            SELECT 'opened' AS name, severity, count(*) AS n FROM incidents GROUP BY severity
            UNION ALL
            SELECT 'resolved', severity, sum(status = 'resolved') FROM incidents GROUP BY severity
            UNION ALL
            SELECT 'reopened', severity, sum(reopen_count) FROM incidents GROUP BY severity
            UNION ALL
            SELECT 'opened', severity, sum(opened) FROM rollup_hourly
            WHERE severity != '' GROUP BY severity
            UNION ALL
            SELECT 'resolved', severity, sum(resolved) FROM rollup_hourly
            WHERE severity != '' GROUP BY severity
            UNION ALL
            SELECT 'reopened', severity, sum(reopened) FROM rollup_hourly
            WHERE severity != '' GROUP BY severity
        ) GROUP BY name, severity;

        -- A row written already resolved or reopened (imports, test histories) counts as such.
        CREATE TRIGGER counters_incident_inserted AFTER INSERT ON incidents BEGIN
            INSERT INTO counters (name, severity, value) VALUES ('opened', NEW.severity, 1)
            ON CONFLICT (name, severity) DO UPDATE SET value = value + 1;
            INSERT INTO counters (name, severity, value)
            SELECT 'resolved', NEW.severity, 1 WHERE NEW.status = 'resolved'
            ON CONFLICT (name, severity) DO UPDATE SET value = value + 1;
            INSERT INTO counters (name, severity, value)
            SELECT 'reopened', NEW.severity, NEW.reopen_count WHERE NEW.reopen_count > 0
            ON CONFLICT (name, severity) DO UPDATE SET value = value + excluded.value;
        END;
        CREATE TRIGGER counters_incident_status AFTER UPDATE OF status ON incidents
        WHEN (OLD.status = 'resolved') != (NEW.status = 'resolved') BEGIN
            INSERT INTO counters (name, severity, value)
            VALUES (IIF(NEW.status = 'resolved', 'resolved', 'reopened'), NEW.severity, 1)
            ON CONFLICT (name, severity) DO UPDATE SET value = value + 1;
        END;

        ALTER TABLE heartbeats ADD COLUMN first_run_at REAL;
        -- Only a new row: record_heartbeat's upsert takes the UPDATE path on every later run.
        CREATE TRIGGER heartbeats_first_run AFTER INSERT ON heartbeats
        WHEN NEW.first_run_at IS NULL BEGIN
            UPDATE heartbeats SET first_run_at = NEW.last_run_at WHERE command = NEW.command;
        END;
        """
    )


@migrations()
def m008_open_and_flapping_indexes(db: sqlite_utils.Database) -> None:
    # Every poll reads the open incidents (and the cleared alerts of open incidents) and the
    # flapping ones; metrics and status count the open ones by severity. Over a long history
    # those were full scans of every incident ever opened. Partial indexes hold only the few
    # rows they are about, so they cost next to nothing to keep up.
    db.executescript(
        """
        CREATE INDEX IF NOT EXISTS incidents_unresolved ON incidents(status, severity)
            WHERE status != 'resolved';
        CREATE INDEX IF NOT EXISTS incidents_flapping ON incidents(id) WHERE flapping = 1;
        """
    )


@migrations()
def m009_id_floor(db: sqlite_utils.Database) -> None:
    # The highest incident id `archive` ever removed: new incidents never reuse an id.
    db.executescript(
        """
        CREATE TABLE id_floor (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
        INSERT INTO id_floor (name, value)
            SELECT 'incidents', COALESCE(max(id), 0) FROM incidents;
        """
    )


@migrations()
def m010_followups(db: sqlite_utils.Database) -> None:
    # Post-incident follow-up actions, tracked until done. `archive` keeps an incident while a
    # follow-up of it is open or was done within the retention period, and folds the ones it
    # deletes into rollup_followups (by the UTC hour each was opened and done in) so `report`
    # keeps its opened/done counts.
    db.executescript(
        """
        CREATE TABLE followups (
            id INTEGER PRIMARY KEY,
            incident_id INTEGER NOT NULL REFERENCES incidents(id) ON DELETE CASCADE,
            text TEXT NOT NULL,
            owner TEXT,
            created_at REAL NOT NULL,
            created_by TEXT NOT NULL,
            due_at REAL,
            done_at REAL,
            done_by TEXT,
            done_note TEXT
        );
        CREATE INDEX followups_incident ON followups(incident_id, id);
        CREATE INDEX followups_open ON followups(due_at) WHERE done_at IS NULL;
        CREATE TABLE rollup_followups (
            hour REAL PRIMARY KEY,           -- epoch seconds of the UTC hour's start
            opened INTEGER NOT NULL DEFAULT 0,
            done INTEGER NOT NULL DEFAULT 0
        );
        """
    )


@migrations()
def m011_source_replicas(db: sqlite_utils.Database) -> None:
    # Each replica of a source with `urls:`, by its URL with any user:password@ masked: what
    # `status` shows per replica, and what a tick needs to name a replica's failure once.
    db.executescript(
        """
        CREATE TABLE source_replicas (
            source TEXT NOT NULL,
            url TEXT NOT NULL,
            last_checked_at REAL NOT NULL,
            last_ok_at REAL,
            consecutive_failures INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            PRIMARY KEY (source, url)
        );
        """
    )


@migrations()
def m012_sync_status(db: sqlite_utils.Database) -> None:
    # `incident sync`: per channel, when it may next ask the remote API (a 429's Retry-After)
    # and its last error.
    db.executescript(
        """
        CREATE TABLE sync_status (
            channel TEXT PRIMARY KEY,
            not_before REAL,
            last_error TEXT
        );
        """
    )


@migrations()
def m013_hosts_and_claims(db: sqlite_utils.Database) -> None:
    # Hosts sharing one state DB: each heartbeat names its host and start, host_heartbeats keeps
    # each host's last run of each command (`status`), and a claim names its host (an action's
    # has a token too) for the compare-and-swap that settles it. Plain SQL for both backends.
    for statement in (
        "ALTER TABLE heartbeats ADD COLUMN host TEXT",
        "ALTER TABLE heartbeats ADD COLUMN last_started_at REAL",
        "ALTER TABLE notifications ADD COLUMN claimed_by TEXT",
        "ALTER TABLE actions ADD COLUMN claimed_by TEXT",
        "ALTER TABLE actions ADD COLUMN claim_token TEXT",
        """
        CREATE TABLE host_heartbeats (
            host TEXT NOT NULL,
            command TEXT NOT NULL,
            last_started_at REAL NOT NULL,
            last_run_at REAL NOT NULL,
            last_exit INTEGER,
            PRIMARY KEY (host, command)
        )
        """,
    ):
        db.execute(statement)


@migrations()
def m014_recovery_breaker_and_approvals(db: sqlite_utils.Database) -> None:
    # recovery.breaker: one row, open while `opened_at` is set; a close (`breaker reset` or the
    # auto reset) starts a new window: actions started before `window_start` no longer count.
    # Approval gates: an action `awaiting_approval` until `approval_until`; who approved or
    # denied it and when; `held_at`: when the open breaker last held it (one note per opening).
    # Plain portable SQL: it runs unchanged on SQLite and PostgreSQL.
    for statement in (
        """
        CREATE TABLE recovery_breaker (
            id INTEGER PRIMARY KEY,
            window_start REAL NOT NULL,
            opened_at REAL,
            reason TEXT,
            closed_at REAL,
            closed_by TEXT,
            close_note TEXT
        )
        """,
        "INSERT INTO recovery_breaker (id, window_start) VALUES (1, 0)",
        "ALTER TABLE actions ADD COLUMN approval_until REAL",
        "ALTER TABLE actions ADD COLUMN decided_by TEXT",
        "ALTER TABLE actions ADD COLUMN decided_at REAL",
        "ALTER TABLE actions ADD COLUMN held_at REAL",
    ):
        db.execute(statement)


@migrations()
def m015_clear_held_until(db: sqlite_utils.Database) -> None:
    # incidents.mass_resolve_guard: an incident whose alerts vanished with most others in one
    # poll keeps them (not cleared, not resolved) until this time; NULL: not held. Plain SQL
    # for both backends.
    db.execute("ALTER TABLE incidents ADD COLUMN clear_held_until REAL")


@migrations()
def m016_tick_lock_lease(db: sqlite_utils.Database) -> None:
    # The PostgreSQL tick lock's lease (store/pg_lease.py): the host and session holding it,
    # renewed until `lease_until` while that process lives. Unused on SQLite. Plain SQL.
    db.execute(
        "CREATE TABLE tick_lock (id INTEGER PRIMARY KEY, host TEXT, backend_pid INTEGER,"
        " lease_until REAL NOT NULL)"
    )
    db.execute("INSERT INTO tick_lock (id, lease_until) VALUES (1, 0)")
