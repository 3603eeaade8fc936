"""Retention (`incident archive`): fold old resolved incidents into rollup_hourly, then delete."""

from __future__ import annotations

from dataclasses import dataclass

from incident_cli.store import rollups
from incident_cli.store.connection import page_bytes, vacuum_db
from incident_cli.store.database import Database, write_tx

BATCH = 5000  # incidents per write transaction: a long archive never blocks a tick for long


@dataclass(frozen=True)
class ArchiveResult:
    cutoff: float
    incidents: int
    alerts: int
    timeline: int
    actions: int
    notifications: int
    storm_notifications: int
    waiting: int  # old enough, but with pending notifications or actions: kept for now
    dry_run: bool
    vacuumed: bool
    size_before: int | None = None
    size_after: int | None = None
    journeys: int = 0  # synthetic-journey results older than the cutoff and not still needed


def archive(
    db: Database,
    now: float,
    older_than_days: float,
    *,
    dry_run: bool = False,
    vacuum: bool = False,
    batch: int = BATCH,
    keep_journeys: int = 24,
) -> ArchiveResult:
    """Archive resolved incidents whose resolved_at is more than `older_than_days` before now.

    Each batch adds its incidents to rollup_hourly and deletes them (alerts, timeline,
    actions, notifications and channel refs go by FK cascade) in one transaction, so a crash
    between batches never counts an incident twice or loses it from the report.

    Synthetic-journey results older than the cutoff go too, except each journey's newest
    `keep_journeys` (the anomaly checks compare a window with the one before it).
    """
    cutoff = now - older_than_days * 86400.0
    if dry_run:
        counts = rollups.archivable_counts(db, cutoff, keep_journeys)
        return ArchiveResult(cutoff=cutoff, dry_run=True, vacuumed=False, **counts)

    old_resolved = rollups.count_old_resolved(db, cutoff)
    totals = dict.fromkeys(("incidents", "alerts", "timeline", "actions", "notifications"), 0)
    with rollups.batch_table(db):
        while True:
            with write_tx(db):
                counted = rollups.archive_batch(db, cutoff, batch)
                if counted is None:
                    break
                for name, n in counted.items():
                    totals[name] += n
        with write_tx(db):
            storm, journeys = rollups.archive_storms_and_journeys(db, cutoff, keep_journeys)

    size_before = size_after = None
    if vacuum:
        size_before = page_bytes(db)
        vacuum_db(db)
        size_after = page_bytes(db)
    return ArchiveResult(
        cutoff=cutoff,
        journeys=journeys,
        storm_notifications=storm,
        waiting=old_resolved - totals["incidents"],
        dry_run=False,
        vacuumed=vacuum,
        size_before=size_before,
        size_after=size_after,
        **totals,
    )
