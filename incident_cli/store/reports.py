"""The SQL of reports and metrics: the shared timing expressions and the reads over a window."""

from __future__ import annotations

from incident_cli.store.database import Database

# One expression per timing, shared by the report (means and percentiles) and by `archive`
# (which folds sums and counts into rollup_hourly), so both count exactly the same thing.
# Each is NULL when it does not apply; clock skew between Prometheus and this host must not
# produce a negative detection time, hence max(..., 0).
MTTD_SQL = "max(opened_at - started_at, 0)"
MTTA_SQL = "max(acknowledged_at - opened_at, 0)"
# Incidents without a started_at (none reported by the source) count from opened_at.
MTTR_SQL = (
    "CASE WHEN status = 'resolved' THEN max(resolved_at - COALESCE(started_at, opened_at), 0) END"
)
LATENCY_SQL = "CASE WHEN n.status = 'sent' THEN max(n.sent_at - n.created_at, 0) END"
ALERTNAME_SQL = "COALESCE(json_extract(labels, '$.alertname'), rule)"
# `escalated_at` and `flapping` are cleared when an incident reopens or settles; the timeline
# remembers that it happened.
ESCALATED_SQL = (
    "(escalated_at IS NOT NULL"
    " OR id IN (SELECT incident_id FROM timeline WHERE kind = 'escalated'))"
)
FLAPPED_SQL = (
    "(flapping = 1 OR id IN (SELECT incident_id FROM timeline WHERE kind = 'flapping_started'))"
)
WINDOW_SQL = "opened_at >= :since AND opened_at <= :until"


def timing_sums(db: Database, since: float, now: float) -> tuple[float | None, ...]:
    """(mttd sum, count, mtta sum, count, mttr sum, count) of incidents opened in the window,
    rows and rolled-up hours together."""
    row: tuple[float | None, ...] = db.conn.execute(
        f"""
        SELECT sum(ds), sum(dc), sum(as_), sum(ac), sum(rs), sum(rc) FROM (
            SELECT sum({MTTD_SQL}) ds, count({MTTD_SQL}) dc, sum({MTTA_SQL}) as_,
                   count({MTTA_SQL}) ac, sum({MTTR_SQL}) rs, count({MTTR_SQL}) rc
            FROM incidents WHERE opened_at >= :since AND opened_at <= :now
            UNION ALL
            SELECT sum(mttd_sum), sum(mttd_count), sum(mtta_sum), sum(mtta_count),
                   sum(mttr_sum), sum(mttr_count)
            FROM rollup_hourly WHERE hour >= :since AND hour <= :now
        )
        """,
        {"since": since, "now": now},
    ).fetchone()
    return row
