"""Post-incident follow-up actions: adding, listing and completing them (each a timeline event),
and the counts `report`, `metrics` and the review show."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from incident_cli.errors import IncidentError, NotFound
from incident_cli.store import followups as store
from incident_cli.store.database import Database, write_tx
from incident_cli.store.incidents import get_incident
from incident_cli.store.timeline import add_event
from incident_cli.times import to_rfc3339

MAX_TEXT = 2000


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
    found = store.row(db, followup_id)
    return Followup.from_row(found) if found else None


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
        followup_id = store.insert(db, incident_id, text, owner, now, by, due_at)
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
        store.mark_done(db, followup_id, now, by, note)
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
    found = store.rows(
        db, now, open_only=open_only, overdue_only=overdue_only, incident_id=incident_id
    )
    return [Followup.from_row(row) for row in found]


def followup_gauges(db: Database, now: float) -> tuple[int, int]:
    """(open, overdue) now, for `metrics`."""
    return store.gauges(db, now)


def followup_counts(db: Database, since: float, until: float) -> dict[str, int]:
    """For `report`: follow-ups opened and done in [since, until], and those that were overdue
    at some moment of it (due before its end and not done before its start or their due time).

    Archived follow-ups keep their opened/done counts in rollup_followups (by UTC hour); they
    were all done before the archive cutoff, so none is missing from a window's overdue count
    unless the window reaches back past that cutoff.
    """
    return store.counts(db, since, until)
