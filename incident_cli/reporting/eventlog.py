"""The timeline as a stream: reading events across incidents (`incident logs`) and appending
every committed event and tick summary to the JSON event log (`log: {file, format: json}`).

Which events a process wrote is known without touching any call site: a TEMP trigger (it lives
on this connection only, so another process's events are never logged twice) copies the id of
every timeline row this connection inserts into a TEMP table. That table is part of the same
transaction, so a rollback forgets the ids with the rows; after each COMMIT (db.write_tx's
`after_commit` hook) the kept rows are read back and appended, one JSON line each. The line is
written after the commit: a process that dies between the two loses that line, never the state.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from incident_cli.display import printable
from incident_cli.redact import redact
from incident_cli.store import timeline
from incident_cli.store.database import Database
from incident_cli.times import to_rfc3339


@dataclass(frozen=True)
class Event:
    """One timeline row, with the incident it belongs to."""

    id: int
    incident_id: int
    at: float
    kind: str
    actor: str
    message: str
    data: Any

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Event:
        id_, incident_id, at, kind, actor, message, data = row
        return cls(
            id_, incident_id, at, kind, actor, message, None if data is None else json.loads(data)
        )

    def to_json(self) -> dict[str, Any]:
        """The timeline fields of `show --json`, plus `incident_id`."""
        return {
            "at": to_rfc3339(self.at),
            "incident_id": self.incident_id,
            "kind": self.kind,
            "actor": self.actor,
            "message": self.message,
            "data": self.data,
        }

    def line(self) -> str:
        """One human line: time, incident, kind, who, what (label text shown inert)."""
        when = to_rfc3339(self.at)
        return printable(
            f"{when}  #{self.incident_id:<5} {self.kind:<20} {self.actor}: {self.message}"
        )


def read_events(
    db: Database,
    *,
    after_id: int = 0,
    since: float | None = None,
    incident_id: int | None = None,
    kinds: Sequence[str] = (),
    limit: int | None = None,
) -> list[Event]:
    """Timeline events with an id above `after_id`, oldest first (by time, then id).

    One SELECT in autocommit mode: no transaction outlives the call, so a follower never keeps
    a read snapshot (or the WAL) pinned while it waits.
    """
    rows = timeline.events_after(
        db, after_id, since=since, incident_id=incident_id, kinds=kinds, limit=limit
    )
    return [Event.from_row(row) for row in rows]


def newest_event_id(db: Database) -> int:
    return timeline.newest_id(db)


def follow_events(
    db: Database,
    *,
    after_id: int,
    incident_id: int | None,
    kinds: Sequence[str],
    interval: float = 1.0,
    sleep: Callable[[float], None] | None = None,
) -> Iterator[Event]:
    """New events as other processes commit them, polling about every `interval` seconds,
    until the caller stops iterating (Ctrl-C). Events are taken in id order: a row written
    with an older `at` (a late poll) still shows, once."""
    import time

    pause = sleep or time.sleep
    last = after_id
    while True:
        rows = timeline.newer_than(db, last)
        for row in rows:
            event = Event.from_row(row)
            last = event.id
            if incident_id is not None and event.incident_id != incident_id:
                continue
            if kinds and event.kind not in kinds:
                continue
            yield event
        pause(interval)


# --------------------------------------------------------------------------- the log file


class EventLog:
    """Appends JSON lines to the configured file; reopens it when logrotate moved it away."""

    def __init__(self, path: str, secrets: Sequence[str]) -> None:
        self.path = path
        self.secrets = list(secrets)
        self._fd: int | None = None
        self._inode: tuple[int, int] | None = None
        self._warned = False

    # -- capturing this connection's events

    def attach(self, db: Database) -> None:
        """Capture the timeline rows this connection writes and log them after each commit."""
        timeline.capture_inserts(db)
        db.after_commit.append(lambda: self.flush(db))

    def flush(self, db: Database) -> None:
        """Log the committed events this connection wrote since the last flush."""
        rows = timeline.take_captured(db)
        if rows is None:  # only what is committed (write_tx calls us after COMMIT)
            return
        lines = []
        for row in rows:
            event = Event.from_row(row)
            lines.append({"type": "event", "event_id": event.id, **event.to_json()})
        self.write(lines)

    # -- writing

    def write(self, records: Sequence[Mapping[str, Any]]) -> None:
        if not records:
            return
        from incident_cli.handlers.planning import mask_params

        text = "".join(
            json.dumps(mask_params(r, self.secrets), ensure_ascii=False, default=str) + "\n"
            for r in records
        )
        try:
            fd = self._open()
            data = text.encode("utf-8", "replace")
            while data:  # O_APPEND: each write lands at the end, whoever else appends
                written = os.write(fd, data)
                data = data[written:]
        except OSError as exc:
            self._warn(f"cannot write the event log {self.path}: {exc.strerror or exc}")

    def tick(
        self,
        command: str,
        started: float,
        finished: float,
        exit_code: int,
        error: str | None,
        stages: Sequence[Mapping[str, Any]] = (),
        host: str | None = None,
    ) -> None:
        """The summary line of one tick command (written after its heartbeat is committed)."""
        record: dict[str, Any] = {
            "type": "tick",
            "at": to_rfc3339(finished),
            "host": host,
            "command": command,
            "exit_code": exit_code,
            "duration_seconds": round(max(finished - started, 0.0), 3),
            "error": error,
        }
        if stages:
            record["stages"] = list(stages)
        self.write([record])

    def _open(self) -> int:
        """The open file, reopened when the path now names another file (rotated) or none."""
        try:
            st = os.stat(self.path)
            current: tuple[int, int] | None = (st.st_dev, st.st_ino)
        except FileNotFoundError:
            current = None
        if self._fd is not None and current == self._inode:
            return self._fd
        self.close()
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        st = os.fstat(fd)
        self._fd, self._inode = fd, (st.st_dev, st.st_ino)
        return fd

    def _warn(self, message: str) -> None:
        if not self._warned:  # one line per process, not one per event
            self._warned = True
            sys.stderr.write(f"incident: {redact(message, self.secrets)}\n")

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self._inode = None
