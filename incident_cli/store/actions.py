"""The actions table: what handlers planned and recovery ran, one row per attempt."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from incident_cli.store.database import Database


def of_incident(db: Database, incident_id: int) -> list[dict[str, Any]]:
    return list(db.query("SELECT * FROM actions WHERE incident_id = ? ORDER BY id", [incident_id]))


def count_by_status(db: Database, statuses: tuple[str, ...]) -> dict[str, int]:
    marks = ", ".join("?" * len(statuses))
    return dict(
        db.conn.execute(
            f"SELECT status, count(*) FROM actions WHERE status IN ({marks}) GROUP BY status",
            statuses,
        ).fetchall()
    )


def command_results(db: Database) -> list[tuple[str, int]]:
    """(status, count) of command actions."""
    return db.conn.execute(
        "SELECT status, count(*) FROM actions WHERE kind = 'command' GROUP BY status"
    ).fetchall()


def insert_planned(
    db: Database,
    incident_id: int,
    kind: str,
    status: str,
    command: str | None,
    params: str,
    target: str | None,
    budget_key: str | None,
    error: str | None,
    planned_at: float,
    due_at: float,
    finished_at: float | None,
) -> int:
    """A planned action (values computed by the planner); returns its id."""
    cursor = db.conn.execute(
        "INSERT INTO actions (incident_id, kind, status, attempts, command, params, target,"
        " budget_key, error, planned_at, due_at, finished_at)"
        " VALUES (?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            incident_id,
            kind,
            status,
            command,
            params,
            target,
            budget_key,
            error,
            planned_at,
            due_at,
            finished_at,
        ),
    )
    return int(cursor.lastrowid or 0)


def incidents_with_only_skipped_blocks(db: Database, error_like: str) -> list[int]:
    """Unresolved incidents whose every block_ip action was skipped with an error LIKE this."""
    rows: Sequence[tuple[int]] = db.conn.execute(
        """
        SELECT i.id FROM incidents i
        WHERE i.id IN (SELECT id FROM incidents WHERE status != 'resolved')
          AND EXISTS (SELECT 1 FROM actions a WHERE a.incident_id = i.id
                      AND a.kind = 'block_ip' AND a.status = 'skipped' AND a.error LIKE ?)
          AND NOT EXISTS (SELECT 1 FROM actions a WHERE a.incident_id = i.id
                          AND a.kind = 'block_ip' AND a.status != 'skipped')
        ORDER BY i.id
        """,
        (error_like,),
    ).fetchall()
    return [row[0] for row in rows]


# --------------------------------------------------------------------------- recovery


def _scope(incident_id: int | None) -> tuple[str, list[Any]]:
    return ("", []) if incident_id is None else (" AND a.incident_id = ?", [incident_id])


def load(db: Database, action_id: int) -> dict[str, Any] | None:
    rows = list(db.query("SELECT * FROM actions WHERE id = ?", [action_id]))
    return rows[0] if rows else None


def hold_claim(
    db: Database, action_id: int, host: str, token: str, now: float
) -> dict[str, Any] | None:
    """The action, if this host's claim on it (this token) still holds and its lease has not
    run out at `now`; None otherwise (the host stalled past its lease, or another tick settled
    it). A compare-and-swap UPDATE: in the caller's write transaction it also locks the row
    until commit, so what the caller writes next settles a claim that was still held."""
    cursor = db.conn.execute(
        "UPDATE actions SET claim_token = claim_token WHERE id = ? AND status = 'running'"
        " AND claimed_by = ? AND claim_token = ? AND lease_until >= ?",
        (action_id, host, token, now),
    )
    return load(db, action_id) if cursor.rowcount == 1 else None


def expired_leases(db: Database, now: float, incident_id: int | None) -> list[dict[str, Any]]:
    scope, args = _scope(incident_id)
    return list(
        db.query(
            "SELECT a.* FROM actions a WHERE a.status = 'running' AND a.lease_until IS NOT NULL"
            f" AND a.lease_until < ?{scope} ORDER BY a.id",
            [now, *args],
        )
    )


def awaiting_verification(db: Database, incident_id: int | None) -> list[dict[str, Any]]:
    scope, args = _scope(incident_id)
    return list(
        db.query(
            "SELECT a.* FROM actions a WHERE a.status = 'running'"
            f" AND a.verify_until IS NOT NULL AND a.lease_until IS NULL{scope} ORDER BY a.id",
            args,
        )
    )


def verification_state(db: Database, action_id: int) -> tuple[str, float | None] | None:
    """(status, verify_until) of an action, or None when it is gone."""
    row = db.conn.execute(
        "SELECT status, verify_until FROM actions WHERE id = ?", (action_id,)
    ).fetchone()
    return None if row is None else (row[0], row[1])


def due(db: Database, now: float, incident_id: int | None) -> list[int]:
    """Pending actions due by `now`, soonest first."""
    scope, args = _scope(incident_id)
    return [
        r[0]
        for r in db.conn.execute(
            "SELECT a.id FROM actions a WHERE a.status = 'pending' AND a.due_at <= ?"
            f"{scope} ORDER BY a.due_at, a.id",
            [now, *args],
        )
    ]


def claim(
    db: Database,
    action_id: int,
    at: float,
    lease_until: float,
    command_json: str | None,
    target: str | None,
    host: str,
    token: str,
) -> bool:
    """pending → running, claimed by this host with this token and a lease (compare and swap);
    False when another tick has it."""
    cursor = db.conn.execute(
        "UPDATE actions SET status = 'running', attempts = attempts + 1, started_at = ?,"
        " lease_until = ?, command = COALESCE(?, command), target = COALESCE(?, target),"
        " claimed_by = ?, claim_token = ?, finished_at = NULL, error = NULL"
        " WHERE id = ? AND status = 'pending'",
        (at, lease_until, command_json, target, host, token, action_id),
    )
    return cursor.rowcount == 1


def record_process(
    db: Database, action_id: int, token: str, pid: int, pgid: int, start: int | None
) -> None:
    """The process group a running action's command leads (while this claim owns it)."""
    db.conn.execute(
        "UPDATE actions SET pid = ?, pgid = ?, proc_start = ?"
        " WHERE id = ? AND status = 'running' AND claim_token = ?",
        (pid, pgid, start, action_id, token),
    )


def finish(
    db: Database,
    action_id: int,
    status: str,
    at: float,
    *,
    error: str | None,
    exit_code: int | None,
    output: str | None,
    only_if: str,
) -> bool:
    """Settle an action if it is still `only_if` (compare and swap)."""
    cursor = db.conn.execute(
        "UPDATE actions SET status = ?, error = ?, exit_code = COALESCE(?, exit_code),"
        " output = COALESCE(?, output), finished_at = ?, lease_until = NULL,"
        " verify_until = NULL WHERE id = ? AND status = ?",
        (status, error, exit_code, output, at, action_id, only_if),
    )
    return cursor.rowcount == 1


def start_verification(
    db: Database, action_id: int, exit_code: int | None, output: str, verify_until: float
) -> None:
    """The command ran; its fix is checked until `verify_until`."""
    db.conn.execute(
        "UPDATE actions SET exit_code = ?, output = ?, lease_until = NULL,"
        " verify_until = ? WHERE id = ?",
        (exit_code, output, verify_until, action_id),
    )


def insert_retry(
    db: Database,
    incident_id: int,
    kind: str,
    attempts: int,
    command: str | None,
    params: str,
    target: str | None,
    budget_key: str | None,
    planned_at: float,
    due_at: float,
) -> int:
    """The next attempt of a failed action; returns its id."""
    cursor = db.conn.execute(
        "INSERT INTO actions (incident_id, kind, status, attempts, command, params, target,"
        " budget_key, planned_at, due_at) VALUES (?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?)",
        (incident_id, kind, attempts, command, params, target, budget_key, planned_at, due_at),
    )
    return int(cursor.lastrowid or 0)


def attempts_used(db: Database, budget_key: str, since: float) -> int:
    """Command attempts of a budget started since `since`."""
    row = db.conn.execute(
        "SELECT count(*) FROM actions WHERE budget_key = ? AND kind = 'command'"
        " AND started_at IS NOT NULL AND started_at >= ?",
        (budget_key, since),
    ).fetchone()
    return int(row[0])


def recently_blocked(db: Database, ip: str, since: float) -> bool:
    row = db.conn.execute(
        "SELECT 1 FROM actions WHERE kind = 'block_ip' AND target = ? AND status = 'succeeded'"
        " AND finished_at >= ? LIMIT 1",
        (ip, since),
    ).fetchone()
    return row is not None


def skip_pending(
    db: Database, incident_id: int, error: str, now: float, *, kind: str | None = None
) -> None:
    """Skip an incident's pending actions (of one kind, when given)."""
    only = " AND kind = ?" if kind is not None else ""
    db.conn.execute(
        "UPDATE actions SET status = 'skipped', error = ?, finished_at = ?"
        f" WHERE incident_id = ? AND status = 'pending'{only}",
        (error, now, incident_id, *((kind,) if kind is not None else ())),
    )
