"""Reading and writing incident rows, the timeline (the audit log) and command heartbeats."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from incident_cli.models import Incident
from incident_cli.store.connection import Database
from incident_cli.times import to_rfc3339

MAX_EVENT_MESSAGE = 4096
# json.dumps(data, ensure_ascii=False, default=str), with one encoder instead of one per event.
_encode_data = json.JSONEncoder(ensure_ascii=False, default=str).encode


INSERT_EVENT = (
    "INSERT INTO timeline (incident_id, at, kind, actor, message, data) VALUES (?,?,?,?,?,?)"
)
EventRow = tuple[int, float, str, str, str, str | None]


def event_row(
    incident_id: int,
    at: float,
    kind: str,
    message: str,
    *,
    actor: str = "incident",
    data: Mapping[str, Any] | None = None,
) -> EventRow:
    """The timeline row of one event, for INSERT_EVENT (add_event, or many at once)."""
    if len(message) > MAX_EVENT_MESSAGE:
        message = message[: MAX_EVENT_MESSAGE - 1] + "…"
    return (incident_id, at, kind, actor, message, None if data is None else _encode_data(data))


def add_event(
    db: Database,
    incident_id: int,
    at: float,
    kind: str,
    message: str,
    *,
    actor: str = "incident",
    data: Mapping[str, Any] | None = None,
) -> None:
    """Append one timeline event. Callers hold the write transaction of the change it records."""
    db.conn.execute(INSERT_EVENT, event_row(incident_id, at, kind, message, actor=actor, data=data))


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


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def incident_detail(
    db: Database, incident: Incident, default_severity: str = "warning"
) -> dict[str, Any]:
    """`show --json`: the incident plus its alerts, timeline, actions and notifications.

    Each alert carries its own labels, its name and its own severity (its `severity` label,
    else `default_severity`), whatever the incident's."""
    from incident_cli.lifecycle.routing import alert_severity

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
            "data": _loads(row["data"]),
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
            "command": _loads(row["command"]),
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
            command, params = _loads(row["command"]), _loads(row["params"])
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
            data = _loads(row["data"])
        except ValueError:
            continue
        if isinstance(data, dict) and data.get("action_id") in out:
            ran = _argv_list(data.get("argv"))
            if ran:
                out[data["action_id"]] = ran
    return out


def record_heartbeat(
    db: Database, command: str, started: float, finished: float, exit_code: int, error: str | None
) -> None:
    """Every command run leaves its last run (and last success) for `status` and `metrics`."""
    from incident_cli.store.connection import write_tx

    with write_tx(db):
        db.conn.execute(
            """
            INSERT INTO heartbeats (command, last_run_at, last_ok_at, last_exit, last_duration,
                                    last_error)
            VALUES (?, ?, ?, ?, ?, ?)
            ON CONFLICT(command) DO UPDATE SET
                last_run_at = excluded.last_run_at,
                last_ok_at = COALESCE(excluded.last_ok_at, heartbeats.last_ok_at),
                last_exit = excluded.last_exit,
                last_duration = excluded.last_duration,
                last_error = excluded.last_error
            """,
            (
                command,
                finished,
                finished if exit_code == 0 else None,
                exit_code,
                finished - started,
                error[:1000] if error else None,
            ),
        )
