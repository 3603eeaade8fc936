"""The counters and hourly rollups that outlive archived incidents."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

from incident_cli.store.database import Database
from incident_cli.store.followups import ARCHIVE_HOLD_SQL, fold_archived_followups
from incident_cli.store.reports import (
    ALERTNAME_SQL,
    ESCALATED_SQL,
    FLAPPED_SQL,
    LATENCY_SQL,
    MTTA_SQL,
    MTTD_SQL,
    MTTR_SQL,
)


def counters(db: Database) -> list[tuple[str, str, int]]:
    """(name, severity, value) of every counter (opened, reopened, resolved)."""
    return db.conn.execute("SELECT name, severity, value FROM counters").fetchall()


def recovery_totals(db: Database, results: Sequence[str]) -> tuple[int, ...]:
    """For each recovery result, the archived command actions that ended with it."""
    row: tuple[int, ...] = db.conn.execute(
        "SELECT "
        + ", ".join(f"COALESCE(sum(recovery_{r}), 0)" for r in results)
        + " FROM rollup_hourly"
    ).fetchone()
    return row


# --------------------------------------------------------------------------- archive

# An incident still has work queued when a notification is pending or an action is pending or
# running; archiving it would drop that work, so it waits for a later archive.
# An incident resolved by hand whose alerts still fire holds them (no reopen, no page) until
# they clear: archiving it would let the same alert open and page again.
_ARCHIVABLE = (
    """
    status = 'resolved' AND resolved_at < :cutoff
    AND NOT EXISTS (SELECT 1 FROM alerts al INDEXED BY alerts_uncleared
                    WHERE al.incident_id = incidents.id AND al.state != 'cleared')
    AND NOT EXISTS (SELECT 1 FROM notifications n
                    WHERE n.incident_id = incidents.id AND n.status = 'pending')
    AND NOT EXISTS (SELECT 1 FROM actions a
                    WHERE a.incident_id = incidents.id AND a.status IN ('pending', 'running'))
"""
    + ARCHIVE_HOLD_SQL
)
_STORM = "incident_id IS NULL AND status IN ('sent', 'dead') AND created_at < :cutoff"
_OLD_JOURNEYS = """at < :cutoff AND id NOT IN (
    SELECT id FROM (SELECT id, row_number() OVER (PARTITION BY journey ORDER BY at DESC, id DESC)
                    AS newest FROM journeys) AS ranked WHERE newest <= :keep)"""

ROLLUP_COLUMNS = (
    "opened",
    "resolved",
    "reopened",
    "false_positive",
    "escalated",
    "flapped",
    "mttd_sum",
    "mttd_count",
    "mtta_sum",
    "mtta_count",
    "mttr_sum",
    "mttr_count",
    "recovery_succeeded",
    "recovery_failed",
    "recovery_refused",
    "recovery_skipped",
    "notifications_sent",
    "notifications_dead",
    "notification_latency_sum",
)
_UPSERT = ", ".join(f"{c} = rollup_hourly.{c} + excluded.{c}" for c in ROLLUP_COLUMNS)


def _count(db: Database, table: str, ids_sql: str, args: dict[str, float]) -> int:
    sql = f"SELECT count(*) FROM {table} WHERE incident_id IN ({ids_sql})"
    return int(db.conn.execute(sql, args).fetchone()[0])


def count_old_resolved(db: Database, cutoff: float) -> int:
    (n,) = db.conn.execute(
        "SELECT count(*) FROM incidents WHERE status = 'resolved' AND resolved_at < :cutoff",
        {"cutoff": cutoff},
    ).fetchone()
    return int(n)


def archivable_counts(db: Database, cutoff: float, keep_journeys: int) -> dict[str, int]:
    """What an archive at this cutoff would remove (a dry run): ArchiveResult's counts."""
    args = {"cutoff": cutoff}
    conn = db.conn
    candidates = f"SELECT id FROM incidents WHERE {_ARCHIVABLE}"
    (n,) = conn.execute(f"SELECT count(*) FROM ({candidates}) AS c", args).fetchone()
    (storm,) = conn.execute(f"SELECT count(*) FROM notifications WHERE {_STORM}", args).fetchone()
    (journeys,) = conn.execute(
        f"SELECT count(*) FROM journeys WHERE {_OLD_JOURNEYS}",
        {**args, "keep": keep_journeys},
    ).fetchone()
    return {
        "journeys": journeys,
        "incidents": n,
        "alerts": _count(db, "alerts", candidates, args),
        "timeline": _count(db, "timeline", candidates, args),
        "actions": _count(db, "actions", candidates, args),
        "notifications": _count(db, "notifications", candidates, args),
        "storm_notifications": storm,
        "waiting": count_old_resolved(db, cutoff) - n,
    }


@contextlib.contextmanager
def batch_table(db: Database) -> Iterator[None]:
    """The TEMP table that holds one batch's incident ids."""
    db.conn.execute("CREATE TEMP TABLE IF NOT EXISTS archive_batch (id INTEGER PRIMARY KEY)")
    try:
        yield
    finally:
        db.conn.execute("DROP TABLE IF EXISTS temp.archive_batch")


def archive_batch(db: Database, cutoff: float, limit: int) -> dict[str, int] | None:
    """Fold up to `limit` archivable incidents into the rollups and delete them (their rows
    go by cascade): the rows removed per table, or None when nothing was left. Callers hold the
    write transaction, inside batch_table()."""
    conn = db.conn
    candidates = f"SELECT id FROM incidents WHERE {_ARCHIVABLE}"
    conn.execute("DELETE FROM temp.archive_batch")
    conn.execute(
        f"INSERT INTO temp.archive_batch (id) {candidates} ORDER BY id LIMIT :batch",
        {"cutoff": cutoff, "batch": limit},
    )
    (n,) = conn.execute("SELECT count(*) FROM temp.archive_batch").fetchone()
    if not n:
        return None
    ids = "SELECT id FROM temp.archive_batch"
    counted = {
        table: _count(db, table, ids, {})
        for table in ("alerts", "timeline", "actions", "notifications")
    }
    _fold_incidents(db)
    fold_archived_followups(db, ids)
    conn.execute(
        "INSERT INTO id_floor (name, value) SELECT 'incidents', max(id) FROM incidents"
        " WHERE true ON CONFLICT(name) DO UPDATE SET"
        " value = max(id_floor.value, excluded.value)"
    )
    conn.execute(f"DELETE FROM incidents WHERE id IN ({ids})")
    counted["incidents"] = n
    return counted


def archive_storms_and_journeys(db: Database, cutoff: float, keep: int) -> tuple[int, int]:
    """Fold and delete old storm summaries; delete old journey results but each journey's
    newest `keep`. Returns (storm rows, journey rows) removed."""
    args = {"cutoff": cutoff}
    conn = db.conn
    (storm,) = conn.execute(f"SELECT count(*) FROM notifications WHERE {_STORM}", args).fetchone()
    if storm:
        _fold_storm(db, args)
        conn.execute(f"DELETE FROM notifications WHERE {_STORM}", args)
    journeys = conn.execute(
        f"DELETE FROM journeys WHERE {_OLD_JOURNEYS}", {**args, "keep": keep}
    ).rowcount
    return int(storm), int(journeys)


def _fold_incidents(db: Database) -> None:
    """Add the batch's incidents to rollup_hourly with the report's own expressions."""
    db.conn.execute(
        f"""
        INSERT INTO rollup_hourly (hour, severity, alertname, {", ".join(ROLLUP_COLUMNS)})
        SELECT CAST(opened_at / 3600 AS INTEGER) * 3600.0 AS hr, severity,
               {ALERTNAME_SQL} AS an,
               count(*), sum(status = 'resolved'), sum(reopen_count > 0),
               sum(resolution = 'false_positive'), sum({ESCALATED_SQL}), sum({FLAPPED_SQL}),
               COALESCE(sum({MTTD_SQL}), 0), count({MTTD_SQL}),
               COALESCE(sum({MTTA_SQL}), 0), count({MTTA_SQL}),
               COALESCE(sum({MTTR_SQL}), 0), count({MTTR_SQL}),
               COALESCE(sum(act.succeeded), 0), COALESCE(sum(act.failed), 0),
               COALESCE(sum(act.refused), 0), COALESCE(sum(act.skipped), 0),
               COALESCE(sum(note.sent), 0), COALESCE(sum(note.dead), 0),
               COALESCE(sum(note.latency), 0)
        FROM incidents
        LEFT JOIN (
            SELECT incident_id, sum(status = 'succeeded') AS succeeded,
                   sum(status = 'failed') AS failed, sum(status = 'refused') AS refused,
                   sum(status = 'skipped') AS skipped
            FROM actions WHERE kind = 'command'
              AND incident_id IN (SELECT id FROM temp.archive_batch)
            GROUP BY incident_id
        ) AS act ON act.incident_id = incidents.id
        LEFT JOIN (
            SELECT n.incident_id, sum(n.status = 'sent') AS sent, sum(n.status = 'dead') AS dead,
                   sum({LATENCY_SQL}) AS latency
            FROM notifications n WHERE n.incident_id IN (SELECT id FROM temp.archive_batch)
            GROUP BY n.incident_id
        ) AS note ON note.incident_id = incidents.id
        WHERE incidents.id IN (SELECT id FROM temp.archive_batch)
        GROUP BY hr, severity, an
        ON CONFLICT (hour, severity, alertname) DO UPDATE SET {_UPSERT}
        """
    )


def _fold_storm(db: Database, args: dict[str, float]) -> None:
    """Storm summaries belong to no incident: they keep the report's notification counts."""
    db.conn.execute(
        f"""
        INSERT INTO rollup_hourly (hour, severity, alertname, notifications_sent,
                                   notifications_dead, notification_latency_sum)
        SELECT CAST(n.created_at / 3600 AS INTEGER) * 3600.0 AS hr, '', '',
               sum(n.status = 'sent'), sum(n.status = 'dead'), COALESCE(sum({LATENCY_SQL}), 0)
        FROM notifications n WHERE {_STORM}
        GROUP BY hr
        ON CONFLICT (hour, severity, alertname) DO UPDATE SET
            notifications_sent = rollup_hourly.notifications_sent + excluded.notifications_sent,
            notifications_dead = rollup_hourly.notifications_dead + excluded.notifications_dead,
            notification_latency_sum
                = rollup_hourly.notification_latency_sum + excluded.notification_latency_sum
        """,
        args,
    )
