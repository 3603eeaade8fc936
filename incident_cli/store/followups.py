"""The followups table and its rollup: rows, counts and what `archive` keeps and folds."""

from __future__ import annotations

from typing import Any

from incident_cli.store.database import Database

# A follow-up is overdue from its due time until it is done.
OVERDUE_SQL = "(due_at IS NOT NULL AND due_at < :now AND done_at IS NULL)"


def row(db: Database, followup_id: int) -> dict[str, Any] | None:
    rows = list(db.query("SELECT * FROM followups WHERE id = ?", [followup_id]))
    return rows[0] if rows else None


def insert(
    db: Database,
    incident_id: int,
    text: str,
    owner: str | None,
    now: float,
    by: str,
    due_at: float | None,
) -> int:
    cursor = db.conn.execute(
        "INSERT INTO followups (incident_id, text, owner, created_at, created_by, due_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (incident_id, text, owner, now, by, due_at),
    )
    return int(cursor.lastrowid or 0)


def mark_done(db: Database, followup_id: int, now: float, by: str, note: str | None) -> None:
    db.conn.execute(
        "UPDATE followups SET done_at = ?, done_by = ?, done_note = ? WHERE id = ?",
        (now, by, note, followup_id),
    )


def rows(
    db: Database, now: float, *, open_only: bool, overdue_only: bool, incident_id: int | None
) -> list[dict[str, Any]]:
    """Follow-up rows, oldest first."""
    where, args = ["TRUE"], {"now": now}  # type: list[str], dict[str, Any]
    if open_only:
        where.append("done_at IS NULL")
    if overdue_only:
        where.append(OVERDUE_SQL)
    if incident_id is not None:
        where.append("incident_id = :incident")
        args["incident"] = incident_id
    sql = f"SELECT * FROM followups WHERE {' AND '.join(where)} ORDER BY id"
    return list(db.query(sql, args))


def gauges(db: Database, now: float) -> tuple[int, int]:
    """(open, overdue) now."""
    found = db.conn.execute(
        f"SELECT count(*), COALESCE(sum({OVERDUE_SQL}), 0) FROM followups WHERE done_at IS NULL",
        {"now": now},
    ).fetchone()
    return int(found[0]), int(found[1])


def counts(db: Database, since: float, until: float) -> dict[str, int]:
    """Follow-ups opened and done in [since, until] (live and rolled up), and those overdue at
    some moment of it."""
    args = {"since": since, "until": until}
    opened, done, overdue = db.conn.execute(
        """
        SELECT COALESCE(sum(created_at >= :since AND created_at <= :until), 0),
               COALESCE(sum(done_at >= :since AND done_at <= :until), 0),
               COALESCE(sum(due_at IS NOT NULL AND due_at <= :until
                            AND (done_at IS NULL OR (done_at > due_at AND done_at >= :since))),
                        0)
        FROM followups
        """,
        args,
    ).fetchone()
    rolled = db.conn.execute(
        "SELECT COALESCE(sum(opened), 0), COALESCE(sum(done), 0) FROM rollup_followups"
        " WHERE hour >= :since AND hour <= :until",
        args,
    ).fetchone()
    return {
        "opened": int(opened) + int(rolled[0]),
        "done": int(done) + int(rolled[1]),
        "overdue": int(overdue),
    }


# `archive`: an incident with a follow-up that is open, or was done after the cutoff, stays;
# the follow-ups of the incidents it deletes are folded into rollup_followups first (then
# deleted with them by the foreign key's cascade).
ARCHIVE_HOLD_SQL = """
    AND NOT EXISTS (SELECT 1 FROM followups f WHERE f.incident_id = incidents.id
                    AND (f.done_at IS NULL OR f.done_at >= :cutoff))
"""


def fold_archived_followups(db: Database, batch_ids_sql: str) -> None:
    db.conn.execute(
        f"""
        INSERT INTO rollup_followups (hour, opened, done)
        SELECT hr, sum(o), sum(d) FROM (
            SELECT CAST(created_at / 3600 AS INTEGER) * 3600.0 AS hr, 1 AS o, 0 AS d
            FROM followups WHERE incident_id IN ({batch_ids_sql})
            UNION ALL
            SELECT CAST(done_at / 3600 AS INTEGER) * 3600.0, 0, 1
            FROM followups WHERE incident_id IN ({batch_ids_sql}) AND done_at IS NOT NULL
        ) AS folded GROUP BY hr
        ON CONFLICT (hour) DO UPDATE SET opened = rollup_followups.opened + excluded.opened,
            done = rollup_followups.done + excluded.done
        """
    )
