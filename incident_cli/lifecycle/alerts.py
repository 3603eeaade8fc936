"""An incident's alert rows: recording what a poll sees and clearing what it no longer does."""

from __future__ import annotations

from incident_cli.models import Alert, clip_values
from incident_cli.store import alerts as alerts_store
from incident_cli.store.batch import IncidentBatch, dumps, insert_alert
from incident_cli.store.database import Database
from incident_cli.store.timeline import (
    EventRow,
    add_event,
    add_event_row,
    event_row,
)


def record_alerts(
    db: Database,
    incident_id: int,
    alerts: list[Alert],
    now: float,
    known: dict[tuple[str, str], str],
    batch: IncidentBatch | None = None,
) -> int:
    """Record the alerts seen now for an incident; timeline `alert_firing` for new/returning ones.

    `known` maps (source, fingerprint) to the stored state of this incident's alert rows. With
    a batch, new alert rows and the events go into it (an UPDATE writes the batch first).
    """
    events = 0
    for alert in alerts:
        previous = known.get((alert.source, alert.fingerprint))
        state = "suppressed" if alert.state == "suppressed" else "firing"
        if previous is None:
            if batch is not None:
                _, labels_json, _, annotations_json = batch.maps(alert)
            else:
                labels_json = dumps(clip_values(alert.labels))
                annotations_json = dumps(clip_values(alert.annotations))
            row = (
                incident_id,
                alert.source,
                alert.fingerprint,
                labels_json,
                annotations_json,
                state,
                alert.starts_at,
                now,
                now,
                (alert.generator_url or "")[:2048] or None,
            )
            if batch is not None:
                batch.alerts.append(row)
            else:
                insert_alert(db, row)
        else:
            if batch is not None:
                batch.flush()
            alerts_store.set_state(db, incident_id, alert.source, alert.fingerprint, state, now)
        event: EventRow | None = None
        if state == "firing" and previous in (None, "cleared"):
            event = event_row(
                incident_id,
                now,
                "alert_firing",
                f"{alert.name or 'alert'} firing on {alert.source}",
                data={"source": alert.source, "fingerprint": alert.fingerprint},
            )
            events += 1
        elif state != previous and previous is not None:
            event = event_row(
                incident_id,
                now,
                "note",
                f"{alert.name or 'alert'} on {alert.source} is now {state}",
                data={"source": alert.source, "fingerprint": alert.fingerprint},
            )
        if event is not None:
            if batch is not None:
                batch.events.append(event)
            else:
                add_event_row(db, event)
        known[(alert.source, alert.fingerprint)] = state
    return events


def clear_alerts(db: Database, incident_id: int, gone: list[tuple[str, str]], now: float) -> None:
    for source, fp in gone:
        name = alerts_store.clear(db, incident_id, source, fp, now)
        add_event(
            db,
            incident_id,
            now,
            "alert_cleared",
            f"{name or 'alert'} no longer reported by {source}",
            data={"source": source, "fingerprint": fp},
        )


def alert_state(alert: Alert) -> str:
    return "suppressed" if alert.state == "suppressed" else "firing"
