"""The rows a poll opens (incidents, alerts, timeline) written a few statements at a time, and
how label maps are stored (clipped, compact JSON)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from incident_cli.models import Alert, clip_values
from incident_cli.store.database import Database
from incident_cli.store.incidents import next_id
from incident_cli.store.timeline import INSERT_EVENT, EventRow

# What json.dumps(value, ensure_ascii=False, separators=(",", ":")) gives, without building an
# encoder per call (a storm poll encodes tens of thousands of label maps).
dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

_INSERT_INCIDENT = (
    "INSERT INTO incidents (id, key, title, status, severity, rule, handler, source, labels,"
    " annotations, started_at, opened_at, last_seen_at, updated_at)"
    " VALUES (?, ?, ?, 'open', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_ALERT = (
    "INSERT INTO alerts (incident_id, source, fingerprint, labels, annotations, state,"
    " starts_at, first_seen_at, last_seen_at, generator_url)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
MAX_ROWID = 2**63 - 1


class IncidentBatch:
    """The rows of the incidents a poll opens (incident, alerts, timeline), written with one
    executemany per table instead of one INSERT per row (a storm opens thousands).

    Nothing about the rows changes. An incident's id is given here as max(id) + 1 on, which is
    what SQLite gives a table without AUTOINCREMENT, and nothing else writes inside the poll's
    write transaction. Each table's rows keep their order, and the poll writes the batch
    (`flush`) before any other statement reads or writes these tables, so every row and every
    id is what writing them one at a time would have given; all in the same transaction.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self.next_id: int | None = None
        self.incidents: list[tuple[Any, ...]] = []
        self.alerts: list[tuple[Any, ...]] = []
        self.events: list[EventRow] = []
        # (clipped labels, their JSON, clipped annotations, their JSON) by alert: an incident
        # and the alert row of its first alert store the same maps.
        self._maps: dict[int, tuple[dict[str, str], str, dict[str, str], str]] = {}

    def incident_id(self) -> int | None:
        """The id the next incident row gets, or None to insert it the usual way."""
        if self.next_id is None:
            self.next_id = next_id(self.db)
        if self.next_id >= MAX_ROWID:
            return None  # SQLite picks at random up there: let it
        self.next_id += 1
        return self.next_id - 1

    def maps(self, alert: Alert) -> tuple[dict[str, str], str, dict[str, str], str]:
        found = self._maps.get(id(alert))
        if found is None:
            labels, annotations = clip_values(alert.labels), clip_values(alert.annotations)
            found = (labels, dumps(labels), annotations, dumps(annotations))
            self._maps[id(alert)] = found
        return found

    def flush(self) -> None:
        # Incidents first: the other rows refer to them (foreign keys are on).
        for sql, rows in (
            (_INSERT_INCIDENT, self.incidents),
            (_INSERT_ALERT, self.alerts),
            (INSERT_EVENT, self.events),
        ):
            if rows:
                _insert_rows(self.db.conn, sql, rows)
        self.incidents.clear()
        self.alerts.clear()
        self.events.clear()
        self.next_id = None


def _insert_rows(conn: sqlite3.Connection, sql: str, rows: Sequence[Sequence[Any]]) -> None:
    """`executemany(sql, rows)` as a few multi-row INSERTs (rows inserted in the same order).

    Each execution of an INSERT into a table with triggers (incidents: the m007 counters) opens
    a statement journal in a temporary file and copies into it every page the row touches; one
    statement per few hundred rows does that once per page instead of once per row.
    """
    head, _, values = sql.partition(" VALUES ")
    per = max(1, min(500, conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // len(rows[0])))
    for start in range(0, len(rows), per):
        chunk = rows[start : start + per]
        conn.execute(
            f"{head} VALUES {','.join([values] * len(chunk))}",
            [value for row in chunk for value in row],
        )


def insert_incident(db: Database, row: Sequence[Any]) -> int:
    """One incident row (the batch's column order); returns its id."""
    return int(db.conn.execute(_INSERT_INCIDENT, row).lastrowid or 0)


def insert_alert(db: Database, row: Sequence[Any]) -> None:
    db.conn.execute(_INSERT_ALERT, row)
