"""The recovery guards' rows: the blast-radius breaker (`recovery_breaker`) and the approval
gates' columns of `actions` (awaiting, approved, denied, expired, held by the breaker)."""

from __future__ import annotations

from typing import Any

from incident_cli.store.database import Database

# --------------------------------------------------------------------------- breaker


def breaker_state(db: Database) -> dict[str, Any]:
    """The breaker's row: window_start, opened_at (None: closed), reason, closed_*."""
    rows = list(db.query("SELECT * FROM recovery_breaker WHERE id = 1"))
    if rows:
        return rows[0]
    return {
        "window_start": 0.0,
        "opened_at": None,
        "reason": None,
        "closed_at": None,
        "closed_by": None,
        "close_note": None,
    }


def open_breaker(db: Database, at: float, reason: str) -> bool:
    """closed → open (compare and swap); False when it was open already."""
    cursor = db.conn.execute(
        "UPDATE recovery_breaker SET opened_at = ?, reason = ? WHERE id = 1 AND opened_at IS NULL",
        (at, reason),
    )
    return cursor.rowcount == 1


def close_breaker(db: Database, at: float, by: str, note: str | None) -> bool:
    """open → closed, and a new window from `at`; False when it was not open."""
    cursor = db.conn.execute(
        "UPDATE recovery_breaker SET opened_at = NULL, window_start = ?, closed_at = ?,"
        " closed_by = ?, close_note = ? WHERE id = 1 AND opened_at IS NOT NULL",
        (at, at, by, note),
    )
    return cursor.rowcount == 1


def fixes_started_since(db: Database, since: float) -> int:
    """command and block_ip attempts started at or after `since`."""
    row = db.conn.execute(
        "SELECT count(*) FROM actions WHERE kind IN ('command', 'block_ip')"
        " AND started_at IS NOT NULL AND started_at >= ?",
        (since,),
    ).fetchone()
    return int(row[0])


def incidents_with_planned_fixes(db: Database) -> int:
    """Unresolved incidents with a command or block_ip action still to run or running."""
    row = db.conn.execute(
        "SELECT count(DISTINCT a.incident_id) FROM actions a JOIN incidents i"
        " ON i.id = a.incident_id WHERE i.status != 'resolved'"
        " AND a.kind IN ('command', 'block_ip')"
        " AND a.status IN ('pending', 'awaiting_approval', 'running')"
    ).fetchone()
    return int(row[0])


def hold(db: Database, action_id: int, at: float, opened_at: float) -> bool:
    """Mark a due action held by the breaker; True the first time for this opening."""
    cursor = db.conn.execute(
        "UPDATE actions SET held_at = ? WHERE id = ? AND status = 'pending'"
        " AND (held_at IS NULL OR held_at < ?)",
        (at, action_id, opened_at),
    )
    return cursor.rowcount == 1


# --------------------------------------------------------------------------- approvals


def request_approval(db: Database, action_id: int, until: float) -> bool:
    """pending → awaiting_approval until `until` (compare and swap)."""
    cursor = db.conn.execute(
        "UPDATE actions SET status = 'awaiting_approval', approval_until = ?"
        " WHERE id = ? AND status = 'pending'",
        (until, action_id),
    )
    return cursor.rowcount == 1


def awaiting_of_incident(db: Database, incident_id: int) -> list[dict[str, Any]]:
    return list(
        db.query(
            "SELECT * FROM actions WHERE incident_id = ? AND status = 'awaiting_approval'"
            " ORDER BY id",
            [incident_id],
        )
    )


def approve(db: Database, action_id: int, by: str, at: float) -> bool:
    """awaiting_approval → pending, approved by `by` (it runs at the next `recover`)."""
    cursor = db.conn.execute(
        "UPDATE actions SET status = 'pending', decided_by = ?, decided_at = ?,"
        " approval_until = NULL WHERE id = ? AND status = 'awaiting_approval'",
        (by, at, action_id),
    )
    return cursor.rowcount == 1


def settle_awaiting(
    db: Database, action_id: int, status: str, at: float, error: str, by: str | None = None
) -> bool:
    """awaiting_approval → `status` (`skipped` when denied by `by`, `expired`), with why."""
    cursor = db.conn.execute(
        "UPDATE actions SET status = ?, error = ?, finished_at = ?, approval_until = NULL,"
        " decided_by = ?, decided_at = ? WHERE id = ? AND status = 'awaiting_approval'",
        (status, error, at, by, at if by is not None else None, action_id),
    )
    return cursor.rowcount == 1


def expired_approvals(db: Database, now: float, incident_id: int | None) -> list[dict[str, Any]]:
    """Actions still awaiting approval past their timeout."""
    scope = "" if incident_id is None else " AND incident_id = ?"
    return list(
        db.query(
            "SELECT * FROM actions WHERE status = 'awaiting_approval'"
            f" AND approval_until < ?{scope} ORDER BY id",
            [now, *([] if incident_id is None else [incident_id])],
        )
    )
