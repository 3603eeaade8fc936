"""The outbox's rows (notifications): queueing, the reads delivery and storms need, counts."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from incident_cli.store.database import Database

# json.dumps(message, ensure_ascii=False, default=str), with one encoder instead of one per row.
_encode_message = json.JSONEncoder(ensure_ascii=False, default=str).encode
CHUNK = 500  # ids per IN (...) list


def enqueue(
    db: Database,
    channels: Iterable[str],
    incident_id: int | None,
    event: str,
    message: Any,
    now: float,
) -> int:
    """One pending row per channel; returns how many."""
    payload = _encode_message(message)
    rows = [(incident_id, ch, event, payload, now, now) for ch in channels]
    db.conn.executemany(
        "INSERT INTO notifications (incident_id, channel, event, status, attempts, message,"
        " created_at, next_attempt_at) VALUES (?, ?, ?, 'pending', 0, ?, ?, ?)",
        rows,
    )
    return len(rows)


def channels_with_firing(db: Database, incident_id: int) -> list[str]:
    """Channels with a firing (or escalation) message for this incident, sent or on its way."""
    rows = db.conn.execute(
        "SELECT DISTINCT channel FROM notifications WHERE incident_id = ?"
        " AND event IN ('firing', 'escalation') AND status != 'dead' ORDER BY channel",
        (incident_id,),
    ).fetchall()
    return [row[0] for row in rows]


def unsettled_storms(db: Database) -> Iterator[tuple[str, str]]:
    """(channel, message JSON) of every storm summary not yet followed by its `resolved`."""
    yield from db.conn.execute(
        "SELECT channel, message FROM notifications WHERE incident_id IS NULL"
        " AND event = 'storm' AND status != 'dead' AND json_extract(message, '$.storm_id')"
        " NOT IN (SELECT json_extract(message, '$.storm_id') FROM notifications"
        "  WHERE incident_id IS NULL AND event = 'resolved'"
        "  AND json_extract(message, '$.storm_id') IS NOT NULL)"
    )


def unsent_counts(db: Database, ids: list[int]) -> dict[int, dict[str, int]]:
    """incident id → {status: count} of its notifications not sent yet."""
    counts: dict[int, dict[str, int]] = {}
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        rows = db.conn.execute(
            "SELECT incident_id, status, count(*) FROM notifications WHERE status != 'sent'"
            f" AND incident_id IN ({','.join('?' * len(chunk))}) GROUP BY incident_id, status",
            chunk,
        )
        for incident_id, state, count in rows:
            counts.setdefault(incident_id, {})[state] = count
    return counts


def of_incident(db: Database, incident_id: int) -> list[dict[str, Any]]:
    return list(
        db.query("SELECT * FROM notifications WHERE incident_id = ? ORDER BY id", [incident_id])
    )


def status_counts(db: Database, statuses: tuple[str, ...]) -> dict[str, int]:
    marks = ", ".join("?" * len(statuses))
    return dict(
        db.conn.execute(
            f"SELECT status, count(*) FROM notifications WHERE status IN ({marks}) GROUP BY status",
            statuses,
        ).fetchall()
    )


def counts_by_channel(db: Database) -> list[tuple[str, str, int]]:
    """(channel, status, count) of every notification."""
    return db.conn.execute(
        "SELECT channel, status, count(*) FROM notifications GROUP BY channel, status"
        " ORDER BY channel, status"
    ).fetchall()


def backlog(db: Database) -> tuple[int, float | None]:
    """(pending rows, when the oldest was queued)."""
    depth, oldest = db.conn.execute(
        "SELECT count(*), min(created_at) FROM notifications WHERE status = 'pending'"
    ).fetchone()
    return depth, oldest


# --------------------------------------------------------------------------- delivery

PENDING_COLUMNS = (
    "id, incident_id, channel, event, message, created_at, next_attempt_at, lease_until, attempts"
)


def pending(db: Database, only_channel: str | None = None) -> list[tuple[Any, ...]]:
    """Every pending row (PENDING_COLUMNS), oldest first."""
    sql = f"SELECT {PENDING_COLUMNS} FROM notifications WHERE status = 'pending'"
    args: list[Any] = []
    if only_channel is not None:
        sql += " AND channel = ?"
        args.append(only_channel)
    return db.conn.execute(sql + " ORDER BY id", args).fetchall()


def claim(
    db: Database,
    row_id: int,
    incident_id: int | None,
    channel: str,
    now: float,
    lease_until: float,
    token: str,
    host: str,
) -> tuple[int, str | None] | None:
    """Lease the row to this host if it is still pending, due, unleased and first in its chain
    (compare and swap): (this attempt's number, the remote id kept for its incident and
    channel). Callers hold the write transaction."""
    if incident_id is not None:
        earlier = db.conn.execute(
            "SELECT 1 FROM notifications WHERE incident_id = ? AND channel = ?"
            " AND status = 'pending' AND id < ? LIMIT 1",
            (incident_id, channel, row_id),
        ).fetchone()
        if earlier:
            return None
    cursor = db.conn.execute(
        "UPDATE notifications SET lease_until = ?, lease_token = ?, claimed_by = ?,"
        " attempts = attempts + 1 WHERE id = ? AND status = 'pending' AND next_attempt_at <= ?"
        " AND (lease_until IS NULL OR lease_until < ?)",
        (lease_until, token, host, row_id, now, now),
    )
    if cursor.rowcount != 1:
        return None
    attempts = db.conn.execute(
        "SELECT attempts FROM notifications WHERE id = ?", (row_id,)
    ).fetchone()[0]
    return int(attempts), remote_ref(db, incident_id, channel)


def remote_ref(db: Database, incident_id: int | None, channel: str) -> str | None:
    """What the channel keeps for this incident (e.g. the Statuspage incident it created)."""
    if incident_id is None:
        return None
    found = db.conn.execute(
        "SELECT remote_id FROM channel_refs WHERE incident_id = ? AND channel = ?",
        (incident_id, channel),
    ).fetchone()
    return found[0] if found else None


def refs(db: Database) -> dict[tuple[int | None, str], str]:
    """Every kept remote id by (incident, channel)."""
    return {
        (incident_id, channel): remote
        for incident_id, channel, remote in db.conn.execute(
            "SELECT incident_id, channel, remote_id FROM channel_refs"
        )
    }


def save_ref(db: Database, incident_id: int | None, channel: str, remote_id: str) -> None:
    db.conn.execute(
        "INSERT INTO channel_refs (incident_id, channel, remote_id) VALUES (?, ?, ?)"
        " ON CONFLICT(incident_id, channel)"
        " DO UPDATE SET remote_id = excluded.remote_id",
        (incident_id, channel, remote_id),
    )


@dataclass(frozen=True)
class Claim:
    """Whose lease a settling write needs: this host's, with this token, still running at `now`."""

    token: str
    host: str
    now: float


def _settle(
    db: Database, row_id: int, claim: Claim, assignments: str, args: tuple[Any, ...]
) -> bool:
    """Write a leased row's outcome if the claim is still this host's, with this token, and its
    lease has not run out (compare and swap): a host that stalled past its lease must not
    settle a row another host may have taken over."""
    cursor = db.conn.execute(
        f"UPDATE notifications SET {assignments}, lease_until = NULL, lease_token = NULL"
        " WHERE id = ? AND lease_token = ? AND claimed_by = ? AND lease_until >= ?",
        (*args, row_id, claim.token, claim.host, claim.now),
    )
    return cursor.rowcount == 1


def mark_sent(db: Database, row_id: int, claim: Claim) -> bool:
    return _settle(db, row_id, claim, "status = 'sent', sent_at = ?, error = NULL", (claim.now,))


def mark_retry(db: Database, row_id: int, claim: Claim, error: str, next_attempt_at: float) -> bool:
    return _settle(db, row_id, claim, "next_attempt_at = ?, error = ?", (next_attempt_at, error))


def mark_dead(db: Database, row_id: int, claim: Claim, error: str) -> bool:
    return _settle(db, row_id, claim, "status = 'dead', error = ?", (error,))


def lease_of(db: Database, row_id: int) -> tuple[str | None, float | None] | None:
    """(the host that claimed the row last, its lease's end or None when it is not leased), or
    None when the row is gone (its incident archived)."""
    found = db.conn.execute(
        "SELECT claimed_by, lease_until FROM notifications WHERE id = ?", (row_id,)
    ).fetchone()
    return None if found is None else (found[0], found[1])
