"""The SQL of reports and metrics: the shared timing expressions and the reads over a window."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

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
        ) AS parts
        """,
        {"since": since, "now": now},
    ).fetchone()
    return row


def _rows(db: Database, sql: str, args: Mapping[str, Any]) -> list[dict[str, Any]]:
    cursor = db.conn.execute(sql, args)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, values, strict=True)) for values in cursor]


def window_groups(db: Database, window: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The window's incidents in one pass (the opened_at index bounds it), grouped by bucket,
    severity and alertname: counts and timing sums for every total, breakdown and chart."""
    return _rows(
        db,
        f"""
        SELECT CAST(opened_at / :bucket AS INTEGER) AS b, severity, {ALERTNAME_SQL} AS alertname,
               count(*) AS opened,
               sum(status = 'resolved') AS resolved,
               sum(status != 'resolved') AS open,
               sum(reopen_count > 0) AS reopened,
               sum(resolution = 'false_positive') AS false_positive,
               sum({ESCALATED_SQL}) AS escalated,
               sum({FLAPPED_SQL}) AS flapped,
               sum({MTTD_SQL}) AS mttd_sum, count({MTTD_SQL}) AS mttd_count,
               sum({MTTA_SQL}) AS mtta_sum, count({MTTA_SQL}) AS mtta_count,
               sum({MTTR_SQL}) AS mttr_sum, count({MTTR_SQL}) AS mttr_count
        FROM incidents WHERE {WINDOW_SQL}
        GROUP BY b, severity, alertname
        """,
        window,
    )


def rollup_groups(db: Database, window: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The archived hours of the window, with their bucket (`b`)."""
    return _rows(
        db,
        "SELECT CAST(hour / :bucket AS INTEGER) AS b, *, 0 AS open FROM rollup_hourly"
        " WHERE hour >= :since AND hour <= :until",
        window,
    )


def command_action_counts(db: Database, window: Mapping[str, Any]) -> list[tuple[str, int]]:
    """(status, count) of the command actions of the window's incidents."""
    return db.conn.execute(
        f"""
        SELECT a.status, count(*) FROM actions a JOIN incidents ON incidents.id = a.incident_id
        WHERE a.kind = 'command' AND {WINDOW_SQL} GROUP BY a.status
        """,
        window,
    ).fetchall()


def notification_counts(db: Database, window: Mapping[str, Any]) -> list[tuple[str, int]]:
    """(status, count) of the notifications of the window's incidents and of its storms."""
    return db.conn.execute(
        f"""
        SELECT n.status, count(*) FROM notifications n
        JOIN incidents ON incidents.id = n.incident_id WHERE {WINDOW_SQL} GROUP BY n.status
        UNION ALL
        SELECT n.status, count(*) FROM notifications n
        WHERE n.incident_id IS NULL AND n.created_at >= :since AND n.created_at <= :until
        GROUP BY n.status
        """,
        window,
    ).fetchall()


def flapping_in_window(
    db: Database, window: Mapping[str, Any], top: int
) -> list[tuple[int, str, str, int, int]]:
    """(id, title, severity, reopen_count, flapping) of the window's incidents that flapped."""
    return db.conn.execute(
        f"SELECT id, title, severity, reopen_count, flapping FROM incidents"
        f" WHERE {WINDOW_SQL} AND {FLAPPED_SQL} ORDER BY reopen_count DESC, id LIMIT :top",
        {**window, "top": top},
    ).fetchall()


def incident_percentiles(
    db: Database, expr: str, window: Mapping[str, Any], n: int, ps: Sequence[float]
) -> list[float | None]:
    """Percentiles of a timing expression over the window's incidents."""
    return _percentiles(db, expr, f"FROM incidents WHERE {WINDOW_SQL}", window, n, ps)


def latency_percentiles(
    db: Database, window: Mapping[str, Any], n: int, ps: Sequence[float]
) -> list[float | None]:
    """Percentiles of the delivery latency of the window's sent notifications."""
    return _percentiles(
        db,
        LATENCY_SQL,
        f"""FROM notifications n LEFT JOIN incidents ON incidents.id = n.incident_id
            WHERE n.status = 'sent' AND CASE WHEN n.incident_id IS NULL
                THEN n.created_at >= :since AND n.created_at <= :until ELSE {WINDOW_SQL} END""",
        window,
        n,
        ps,
    )


def _percentiles(
    db: Database, expr: str, from_sql: str, args: Mapping[str, Any], n: int, ps: Sequence[float]
) -> list[float | None]:
    """Percentiles of the `n` non-NULL values of `expr`, by linear interpolation between ranks.

    SQLite sorts; Python only reads the two ranks around each percentile, so a million
    incidents cost one sort and no million-row transfer. A lone high percentile (p95) reads
    from the top with ORDER BY ... DESC LIMIT, whose bounded sorter keeps only the top few
    percent instead of sorting everything.
    """
    if not n:
        return [None for _ in ps]
    values_sql = f"SELECT v FROM (SELECT {expr} AS v {from_sql}) AS timings WHERE v IS NOT NULL"
    wanted: set[int] = set()
    for p in ps:
        lo = math.floor(p * (n - 1))
        wanted.update({lo, min(lo + 1, n - 1)})
    values: dict[int, float]
    if all(p >= 0.75 for p in ps):
        first, last = min(wanted), max(wanted)
        rows = db.conn.execute(
            f"{values_sql} ORDER BY v DESC LIMIT {last - first + 1} OFFSET {n - 1 - last}",
            args,
        ).fetchall()
        values = {last - i: row[0] for i, row in enumerate(rows)}
    else:
        marks = ",".join(str(r) for r in sorted(wanted))
        values = dict(
            db.conn.execute(
                f"""SELECT rn, v FROM (SELECT v, row_number() OVER (ORDER BY v) - 1 AS rn
                    FROM ({values_sql}) AS vs) AS ranked WHERE rn IN ({marks})""",
                args,
            ).fetchall()
        )
    out: list[float | None] = []
    for p in ps:
        pos = p * (n - 1)
        lo = math.floor(pos)
        hi = min(lo + 1, n - 1)
        out.append(values[lo] + (values[hi] - values[lo]) * (pos - lo))
    return out
