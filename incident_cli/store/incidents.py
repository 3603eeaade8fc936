"""Incident rows: reading them (one, a list, all of one for `show`) and the lifecycle's writes."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from incident_cli.models import Incident
from incident_cli.store.database import Database
from incident_cli.times import to_rfc3339

# Compact JSON for an id list (json_each reads it).
_dumps = json.JSONEncoder(separators=(",", ":")).encode


def get_incident(db: Database, incident_id: int) -> Incident | None:
    if not 0 < incident_id < 2**63:  # SQLite integers are 64-bit
        return None
    rows = list(db.query("SELECT * FROM incidents WHERE id = ?", [incident_id]))
    return Incident.from_row(rows[0]) if rows else None


def list_incidents(
    db: Database, statuses: tuple[str, ...] | None, since: float | None, limit: int | None = None
) -> list[Incident]:
    where, args = [], []  # type: list[str], list[Any]
    if statuses:
        where.append(f"status IN ({','.join('?' * len(statuses))})")
        args.extend(statuses)
    if since is not None:
        where.append("opened_at >= ?")
        args.append(since)
    sql = "SELECT * FROM incidents"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY opened_at DESC, id DESC"
    if limit:
        sql += f" LIMIT {int(limit)}"
    return [Incident.from_row(row) for row in db.query(sql, args)]


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def incident_detail(
    db: Database, incident: Incident, default_severity: str = "warning"
) -> dict[str, Any]:
    """`show --json`: the incident plus its alerts, timeline, actions and notifications.

    Each alert carries its own labels, its name and its own severity (its `severity` label,
    else `default_severity`), whatever the incident's."""
    from incident_cli.models import alert_severity

    out = incident.to_json()
    out["acknowledged_by"] = incident.acknowledged_by
    out["alerts"] = []
    for row in db.query("SELECT * FROM alerts WHERE incident_id = ? ORDER BY id", [incident.id]):
        labels = json.loads(row["labels"])
        out["alerts"].append(
            {
                "alertname": labels.get("alertname"),
                "severity": alert_severity(labels, default_severity),
                "source": row["source"],
                "fingerprint": row["fingerprint"],
                "state": row["state"],
                "labels": labels,
                "annotations": json.loads(row["annotations"]),
                "starts_at": to_rfc3339(row["starts_at"]),
                "first_seen_at": to_rfc3339(row["first_seen_at"]),
                "last_seen_at": to_rfc3339(row["last_seen_at"]),
                "cleared_at": to_rfc3339(row["cleared_at"]),
            }
        )
    out["timeline"] = [
        {
            "at": to_rfc3339(row["at"]),
            "kind": row["kind"],
            "actor": row["actor"],
            "message": row["message"],
            "data": loads(row["data"]),
        }
        for row in db.query(
            "SELECT * FROM timeline WHERE incident_id = ? ORDER BY id", [incident.id]
        )
    ]
    out["actions"] = [
        {
            "id": row["id"],
            "kind": row["kind"],
            "status": row["status"],
            "attempts": row["attempts"],
            "command": loads(row["command"]),
            "exit_code": row["exit_code"],
            "output": row["output"],
            "error": row["error"],
            "planned_at": to_rfc3339(row["planned_at"]),
            "started_at": to_rfc3339(row["started_at"]),
            "finished_at": to_rfc3339(row["finished_at"]),
        }
        for row in db.query(
            "SELECT * FROM actions WHERE incident_id = ? ORDER BY id", [incident.id]
        )
    ]
    out["notifications"] = [
        {
            "id": row["id"],
            "channel": row["channel"],
            "event": row["event"],
            "status": row["status"],
            "attempts": row["attempts"],
            "created_at": to_rfc3339(row["created_at"]),
            "sent_at": to_rfc3339(row["sent_at"]),
            "error": row["error"],
        }
        for row in db.query(
            "SELECT * FROM notifications WHERE incident_id = ? ORDER BY id", [incident.id]
        )
    ]
    return out


def _argv_list(steps: Any) -> list[list[str]]:
    """The argvs among `steps`, as strings (JSON from the DB: anything may be there)."""
    if not isinstance(steps, list):
        return []
    return [[str(item) for item in argv] for argv in steps if isinstance(argv, list) and argv]


def action_argvs(kind: str, command: Any, params: Mapping[str, Any]) -> list[list[str]]:
    """Every argv an action runs, in order, as planned: a command's `command` and the `then`
    steps after it, or a diagnostics action's `commands`."""
    if kind == "diagnostics":
        return _argv_list(params.get("commands"))
    then = params.get("then")
    return _argv_list([command, *(then if isinstance(then, list) else [])])


def action_commands(db: Database, incident_id: int) -> dict[int, list[list[str]]]:
    """Each action's commands for people to read: every argv of its latest start as it ran
    (labels substituted, secrets masked), or as planned when it has not started."""
    out: dict[int, list[list[str]]] = {}
    for row in db.query(
        "SELECT id, kind, command, params FROM actions WHERE incident_id = ?", [incident_id]
    ):
        try:
            command, params = loads(row["command"]), loads(row["params"])
        except ValueError:
            continue
        out[row["id"]] = action_argvs(
            row["kind"], command, params if isinstance(params, dict) else {}
        )
    for row in db.query(
        "SELECT data FROM timeline WHERE incident_id = ? AND kind = 'action_started' ORDER BY id",
        [incident_id],
    ):
        try:
            data = loads(row["data"])
        except ValueError:
            continue
        if isinstance(data, dict) and data.get("action_id") in out:
            ran = _argv_list(data.get("argv"))
            if ran:
                out[data["action_id"]] = ran
    return out


def count_unresolved(db: Database, ids: list[int]) -> int:
    """How many of these incidents are not resolved (an archived one no longer counts)."""
    unresolved = 0
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        unresolved += db.conn.execute(
            f"SELECT count(*) FROM incidents WHERE status != 'resolved'"
            f" AND id IN ({','.join('?' * len(chunk))})",
            chunk,
        ).fetchone()[0]
    return unresolved


def latest_by_key(db: Database, key: str) -> Incident | None:
    """The newest incident with this key, whatever its status."""
    rows = list(db.query("SELECT * FROM incidents WHERE key = ? ORDER BY id DESC LIMIT 1", [key]))
    return Incident.from_row(rows[0]) if rows else None


def unresolved_counts(db: Database) -> list[tuple[str, str, int]]:
    """(status, severity, count) of the incidents not resolved."""
    return db.conn.execute(
        "SELECT status, severity, count(*) FROM incidents WHERE status != 'resolved'"
        " GROUP BY status, severity"
    ).fetchall()


def exists(db: Database, incident_id: int | None) -> bool:
    if incident_id is None:
        return False
    found = db.conn.execute("SELECT 1 FROM incidents WHERE id = ?", (incident_id,))
    return found.fetchone() is not None


def mark_escalated(db: Database, incident_id: int, now: float) -> bool:
    """Escalate an open incident once (compare and swap); False when it already was."""
    cursor = db.conn.execute(
        "UPDATE incidents SET escalated_at = ?, updated_at = ?"
        " WHERE id = ? AND escalated_at IS NULL AND status = 'open'",
        (now, now, incident_id),
    )
    return cursor.rowcount == 1


def mark_fixed(db: Database, incident_id: int, at: float) -> None:
    db.conn.execute(
        "UPDATE incidents SET fixed_at = ?, updated_at = ? WHERE id = ? AND status != 'resolved'",
        (at, at, incident_id),
    )


def mark_recovered(db: Database, incident_id: int, at: float) -> None:
    """An auto-resolved incident whose fix was then verified: resolution `recovered`."""
    db.conn.execute(
        "UPDATE incidents SET resolution = 'recovered', fixed_at = ?, updated_at = ? WHERE id = ?",
        (at, at, incident_id),
    )


# --------------------------------------------------------------------------- lifecycle writes


def next_id(db: Database) -> int:
    """max(id) + 1, never below an id that `archive` removed: ids in tickets, chat messages and
    PagerDuty dedup keys must never come back for another incident."""
    top, floor = db.conn.execute(
        "SELECT (SELECT max(id) FROM incidents),"
        " (SELECT value FROM id_floor WHERE name = 'incidents')"
    ).fetchone()
    return int(max(top or 0, floor or 0) + 1)


def open_rows(
    db: Database,
) -> list[tuple[int, str, float | None, int, float, str, float | None]]:
    """(id, key, last_seen_at, absent_polls, opened_at, severity, clear_held_until) of every
    unresolved incident; the ids come from the incidents_unresolved index, so a long history is
    not scanned."""
    return db.conn.execute(
        "SELECT id, key, last_seen_at, absent_polls, opened_at, severity, clear_held_until"
        " FROM incidents"
        " WHERE id IN (SELECT id FROM incidents WHERE status != 'resolved') ORDER BY id"
    ).fetchall()


def resolved_since(db: Database, since: float) -> list[Incident]:
    return [
        Incident.from_row(row)
        for row in db.query(
            "SELECT * FROM incidents WHERE status = 'resolved' AND resolved_at >= ? ORDER BY id",
            [since],
        )
    ]


def unresolved_by_key(db: Database, key: str) -> Incident | None:
    rows = list(
        db.query(
            "SELECT * FROM incidents WHERE key = ? AND status != 'resolved' ORDER BY id DESC"
            " LIMIT 1",
            [key],
        )
    )
    return Incident.from_row(rows[0]) if rows else None


def flapping(db: Database) -> list[Incident]:
    return [
        Incident.from_row(row) for row in db.query("SELECT * FROM incidents WHERE flapping = 1")
    ]


def touch_seen(db: Database, ids: list[int], now: float) -> None:
    """Seen by this poll: last_seen_at now, absent_polls back to 0, no clear held (one
    statement)."""
    db.conn.execute(
        "UPDATE incidents SET last_seen_at = ?, absent_polls = 0, clear_held_until = NULL"
        " WHERE id IN (SELECT value FROM json_each(?))",
        (now, _dumps(ids)),
    )


def touch(db: Database, incident_id: int, now: float) -> None:
    db.conn.execute(
        "UPDATE incidents SET last_seen_at = ?, updated_at = ? WHERE id = ?",
        (now, now, incident_id),
    )


def set_absent_polls(
    db: Database, incident_id: int, absent_polls: int, last_seen_at: float | None = None
) -> None:
    """The polls its alerts were absent from; `last_seen_at`, when given, replaces the time
    they were last seen (the wait for resolve_after restarts from it)."""
    db.conn.execute(
        "UPDATE incidents SET absent_polls = ?, last_seen_at = coalesce(?, last_seen_at)"
        " WHERE id = ?",
        (absent_polls, last_seen_at, incident_id),
    )


def hold_clears(db: Database, ids: list[int], until: float) -> None:
    """The mass-resolve guard: these incidents keep their alerts until `until`."""
    db.conn.execute(
        "UPDATE incidents SET clear_held_until = ? WHERE id IN (SELECT value FROM json_each(?))",
        (until, _dumps(ids)),
    )


def set_flapping(db: Database, incident_id: int, on: bool, now: float) -> None:
    db.conn.execute(
        "UPDATE incidents SET flapping = ?, updated_at = ? WHERE id = ?",
        (1 if on else 0, now, incident_id),
    )


def mark_resolved(db: Database, incident_id: int, now: float, resolution: str) -> None:
    db.conn.execute(
        "UPDATE incidents SET status = 'resolved', resolved_at = ?, resolution = ?, updated_at = ?"
        " WHERE id = ?",
        (now, resolution, now, incident_id),
    )


def mark_reopened(db: Database, incident_id: int, now: float, severity: str) -> None:
    db.conn.execute(
        "UPDATE incidents SET status = 'open', resolved_at = NULL, resolution = NULL,"
        " acknowledged_at = NULL, acknowledged_by = NULL, reopen_count = reopen_count + 1,"
        " last_seen_at = ?, absent_polls = 0, fixed_at = NULL, escalated_at = NULL,"
        " clear_held_until = NULL,"
        " severity = ?, updated_at = ? WHERE id = ?",
        (now, severity, now, incident_id),
    )


def mark_acknowledged(db: Database, incident_id: int, by: str, now: float) -> None:
    db.conn.execute(
        "UPDATE incidents SET status = 'acknowledged', acknowledged_at = ?,"
        " acknowledged_by = ?, updated_at = ? WHERE id = ?",
        (now, by, now, incident_id),
    )


def set_resolution(db: Database, incident_id: int, resolution: str, now: float) -> None:
    db.conn.execute(
        "UPDATE incidents SET resolution = ?, updated_at = ? WHERE id = ?",
        (resolution, now, incident_id),
    )


def set_severity(db: Database, incident_id: int, severity: str, now: float) -> None:
    db.conn.execute(
        "UPDATE incidents SET severity = ?, updated_at = ? WHERE id = ?",
        (severity, now, incident_id),
    )
