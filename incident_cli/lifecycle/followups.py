"""Post-incident follow-up actions: adding, listing and completing them (each a timeline event),
and the counts `report`, `metrics` and the review show."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from incident_cli.errors import IncidentError, NotFound
from incident_cli.store.database import Database, write_tx
from incident_cli.store.incidents import get_incident
from incident_cli.store.timeline import add_event
from incident_cli.times import to_rfc3339

MAX_TEXT = 2000

# A follow-up is overdue from its due time until it is done.
OVERDUE_SQL = "(due_at IS NOT NULL AND due_at < :now AND done_at IS NULL)"


@dataclass(frozen=True)
class Followup:
    id: int
    incident_id: int
    text: str
    owner: str | None
    created_at: float
    created_by: str
    due_at: float | None
    done_at: float | None
    done_by: str | None
    done_note: str | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Followup:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})

    def overdue(self, now: float) -> bool:
        return self.done_at is None and self.due_at is not None and self.due_at < now

    def to_json(self, now: float) -> dict[str, Any]:
        return {
            "id": self.id,
            "incident_id": self.incident_id,
            "text": self.text,
            "owner": self.owner,
            "status": "done" if self.done_at is not None else "open",
            "overdue": self.overdue(now),
            "created_at": to_rfc3339(self.created_at),
            "created_by": self.created_by,
            "due_at": to_rfc3339(self.due_at),
            "done_at": to_rfc3339(self.done_at),
            "done_by": self.done_by,
            "note": self.done_note,
        }


def _get(db: Database, followup_id: int) -> Followup | None:
    if not 0 < followup_id < 2**63:
        return None
    rows = list(db.query("SELECT * FROM followups WHERE id = ?", [followup_id]))
    return Followup.from_row(rows[0]) if rows else None


def add_followup(
    db: Database,
    incident_id: int,
    text: str,
    *,
    owner: str | None,
    due_at: float | None,
    by: str,
    now: float,
) -> Followup:
    """Record a follow-up of an incident (any status: reviews usually come after resolving)."""
    text = text.strip()[:MAX_TEXT]
    if not text:
        raise IncidentError("a follow-up needs a text")
    with write_tx(db):
        if get_incident(db, incident_id) is None:
            raise NotFound(f"no incident {incident_id}")
        cursor = db.conn.execute(
            "INSERT INTO followups (incident_id, text, owner, created_at, created_by, due_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (incident_id, text, owner, now, by, due_at),
        )
        followup_id = int(cursor.lastrowid or 0)
        who = f" (owner {owner})" if owner else ""
        due = f", due {to_rfc3339(due_at)}" if due_at is not None else ""
        add_event(
            db,
            incident_id,
            now,
            "followup_added",
            f"follow-up {followup_id}{who}{due}: {text}",
            actor=by,
            data={"followup_id": followup_id, "owner": owner, "due_at": to_rfc3339(due_at)},
        )
    found = _get(db, followup_id)
    assert found is not None
    return found


def complete_followup(
    db: Database, followup_id: int, *, by: str, note: str | None, now: float
) -> Followup:
    """Mark a follow-up done. Done twice is an error that changes nothing."""
    with write_tx(db):
        found = _get(db, followup_id)
        if found is None:
            raise NotFound(f"no follow-up {followup_id}")
        if found.done_at is not None:
            raise IncidentError(
                f"follow-up {followup_id} is already done"
                f" (by {found.done_by} at {to_rfc3339(found.done_at)})"
            )
        db.conn.execute(
            "UPDATE followups SET done_at = ?, done_by = ?, done_note = ? WHERE id = ?",
            (now, by, note, followup_id),
        )
        late = found.overdue(now)
        add_event(
            db,
            found.incident_id,
            now,
            "followup_done",
            f"follow-up {followup_id} done"
            + (" (after its due date)" if late else "")
            + (f": {note}" if note else ""),
            actor=by,
            data={"followup_id": followup_id, "overdue": late},
        )
    done = _get(db, followup_id)
    assert done is not None
    return done


def list_followups(
    db: Database,
    now: float,
    *,
    open_only: bool = False,
    overdue_only: bool = False,
    incident_id: int | None = None,
) -> list[Followup]:
    """Follow-ups, oldest first."""
    where, args = ["1"], {"now": now}  # type: list[str], dict[str, Any]
    if open_only:
        where.append("done_at IS NULL")
    if overdue_only:
        where.append(OVERDUE_SQL)
    if incident_id is not None:
        where.append("incident_id = :incident")
        args["incident"] = incident_id
    sql = f"SELECT * FROM followups WHERE {' AND '.join(where)} ORDER BY id"
    return [Followup.from_row(row) for row in db.query(sql, args)]


def followup_gauges(db: Database, now: float) -> tuple[int, int]:
    """(open, overdue) now, for `metrics`."""
    row = db.conn.execute(
        f"SELECT count(*), COALESCE(sum({OVERDUE_SQL}), 0) FROM followups WHERE done_at IS NULL",
        {"now": now},
    ).fetchone()
    return int(row[0]), int(row[1])


def followup_counts(db: Database, since: float, until: float) -> dict[str, int]:
    """For `report`: follow-ups opened and done in [since, until], and those that were overdue
    at some moment of it (due before its end and not done before its start or their due time).

    Archived follow-ups keep their opened/done counts in rollup_followups (by UTC hour); they
    were all done before the archive cutoff, so none is missing from a window's overdue count
    unless the window reaches back past that cutoff.
    """
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
        ) GROUP BY hr
        ON CONFLICT (hour) DO UPDATE SET
            opened = opened + excluded.opened, done = done + excluded.done
        """
    )
