"""The numbers of `incident report`: counts, MTTD/MTTA/MTTR, rates, series, computed in SQL."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from incident_cli.models import SEVERITIES
from incident_cli.store import reports
from incident_cli.store.database import Database
from incident_cli.store.reports import (
    MTTA_SQL,
    MTTD_SQL,
    MTTR_SQL,
)
from incident_cli.store.rollups import ROLLUP_COLUMNS
from incident_cli.times import to_rfc3339

RECOVERY_RESULTS = ("succeeded", "failed", "refused", "skipped")

DEFINITIONS = {
    "mttd": "opened_at - started_at",
    "mtta": "acknowledged_at - opened_at",
    "mttr": "resolved_at - started_at (opened_at when the source gave no start time)",
    "window": "incidents opened in [since, until]; an incident opened before the window is"
    " not counted even if it was resolved inside it",
    "means": "over the incidents the timing applies to (MTTA over acknowledged, MTTR over"
    " resolved incidents); null when there are none",
    "median_p90": "linear interpolation between closest ranks, over incidents still in the DB"
    " (archived incidents keep only sums and counts)",
    "recovery_success_rate": "command actions that succeeded / those that ran (succeeded + failed)",
    "escalation_rate": "escalated incidents / opened incidents",
    "false_positive_rate": "incidents resolved as false positives / resolved incidents",
    "notifications": "notifications for the window's incidents plus storm summaries created in"
    " it; failed = dead-lettered; p95 latency = sent_at - created_at of sent ones",
    "archived": "archived incidents count as opened at the start of their UTC hour",
    "followups": "follow-ups opened and done in [since, until], and those overdue (past their"
    " due time and not done) at any moment of it",
}


@dataclass(frozen=True)
class Timing:
    """A duration over a set of incidents: mean (exact), median and p90 (live rows only)."""

    mean: float | None
    median: float | None
    p90: float | None
    count: int


@dataclass(frozen=True)
class Bucket:
    """One slice of the window for the charts: incidents opened by severity, and their MTTR."""

    start: float
    by_severity: Mapping[str, int]
    mttr: float | None


@dataclass(frozen=True)
class FlappingIncident:
    id: int
    title: str
    severity: str
    reopen_count: int
    flapping: bool


@dataclass(frozen=True)
class Report:
    hours: float
    since: float
    until: float
    opened: int
    resolved: int
    open: int
    reopened: int
    false_positive: int
    escalated: int
    flapped: int
    archived: int
    mttd: Timing
    mtta: Timing
    mttr: Timing
    recovery: Mapping[str, int]
    notifications_sent: int
    notifications_failed: int
    notifications_pending: int
    notification_p95: float | None
    by_severity: Mapping[str, int]
    top_alerts: Sequence[tuple[str, int]]
    flapping: Sequence[FlappingIncident]
    bucket_seconds: float
    buckets: Sequence[Bucket]
    # follow-ups opened, done and overdue in the window (followups.followup_counts)
    followups: Mapping[str, int] = field(
        default_factory=lambda: {"opened": 0, "done": 0, "overdue": 0}
    )

    @property
    def recovery_attempted(self) -> int:
        return self.recovery["succeeded"] + self.recovery["failed"]

    @property
    def recovery_success_rate(self) -> float | None:
        return _ratio(self.recovery["succeeded"], self.recovery_attempted)

    @property
    def escalation_rate(self) -> float | None:
        return _ratio(self.escalated, self.opened)

    @property
    def false_positive_rate(self) -> float | None:
        return _ratio(self.false_positive, self.resolved)


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def bucket_seconds_for(hours: float) -> float:
    """Hourly bars up to three days, daily up to 200 days, then wider so charts stay legible."""
    if hours <= 72:
        return 3600.0
    if hours <= 24 * 200:
        return 86400.0
    return 86400.0 * math.ceil(hours / 24 / 200)


# What the report adds up per group: the rollup's incident columns (the recovery and
# notification columns are counted apart), and `open`, which only live rows have.
_SUMS = ("open", *ROLLUP_COLUMNS[: ROLLUP_COLUMNS.index("mttr_count") + 1])


def build_report(db: Database, now: float, hours: float, *, top: int = 10) -> Report:
    """The report over incidents opened in the last `hours` before `now` (live + archived)."""
    from incident_cli.lifecycle.followups import followup_counts

    since = now - hours * 3600.0
    until = now
    bucket = bucket_seconds_for(hours)
    window = {"since": since, "until": until, "bucket": bucket}

    totals: Counter[str] = Counter()
    by_severity: Counter[str] = Counter()
    by_alert: Counter[str] = Counter()
    per_bucket: dict[int, Counter[str]] = {}
    recovery: Counter[str] = Counter()
    notes: Counter[str] = Counter()

    def add(b: int, severity: str, alertname: str, row: Mapping[str, Any]) -> None:
        slot = per_bucket.setdefault(b, Counter())
        for name in _SUMS:
            value = row[name] or 0
            totals[name] += value
        slot["mttr_sum"] += row["mttr_sum"] or 0
        slot["mttr_count"] += row["mttr_count"] or 0
        if row["opened"]:
            slot["sev:" + severity] += row["opened"]
            by_severity[severity] += row["opened"]
            by_alert[alertname] += row["opened"]

    # One pass over the window's incidents (the opened_at index bounds it), grouped finely
    # enough for every total, the severity/alert breakdowns and the chart series.
    live: Counter[str] = Counter()
    for row in reports.window_groups(db, window):
        for name in ("opened", "mttd_count", "mtta_count", "mttr_count"):
            live[name] += row[name]
        add(row["b"], row["severity"], row["alertname"], row)

    for row in reports.rollup_groups(db, window):
        add(row["b"], row["severity"], row["alertname"], row)
        for result in RECOVERY_RESULTS:
            recovery[result] += row[f"recovery_{result}"]
        notes["sent"] += row["notifications_sent"]
        notes["dead"] += row["notifications_dead"]
    archived = totals["opened"] - live["opened"]

    for status, count in reports.command_action_counts(db, window):
        recovery[status] += count

    for status, count in reports.notification_counts(db, window):
        notes[status] += count
        live["sent"] += count if status == "sent" else 0

    def timing(name: str, expr: str) -> Timing:
        median, p90 = reports.incident_percentiles(
            db, expr, window, live[f"{name}_count"], (0.5, 0.9)
        )
        count = totals[f"{name}_count"]
        return Timing(_mean(totals[f"{name}_sum"], count), median, p90, count)

    mttd, mtta, mttr = timing("mttd", MTTD_SQL), timing("mtta", MTTA_SQL), timing("mttr", MTTR_SQL)
    (p95,) = reports.latency_percentiles(db, window, live["sent"], (0.95,))

    flapping: list[FlappingIncident] = []
    if totals["flapped"]:
        for found in reports.flapping_in_window(db, window, top):
            flapping.append(
                FlappingIncident(found[0], found[1], found[2], found[3], bool(found[4]))
            )

    first, last = int(since // bucket), int(until // bucket)
    buckets = []
    for b in range(first, last + 1):
        slot = per_bucket.get(b, Counter())
        buckets.append(
            Bucket(
                start=b * bucket,
                by_severity={
                    s: slot["sev:" + s] for s in _severity_order(by_severity) if slot["sev:" + s]
                },
                mttr=_mean(slot["mttr_sum"], slot["mttr_count"]),
            )
        )

    return Report(
        hours=hours,
        since=since,
        until=until,
        opened=totals["opened"],
        resolved=totals["resolved"],
        open=totals["open"],
        reopened=totals["reopened"],
        false_positive=totals["false_positive"],
        escalated=totals["escalated"],
        flapped=totals["flapped"],
        archived=archived,
        mttd=mttd,
        mtta=mtta,
        mttr=mttr,
        recovery={r: recovery[r] for r in RECOVERY_RESULTS},
        notifications_sent=notes["sent"],
        notifications_failed=notes["dead"],
        notifications_pending=notes["pending"],
        notification_p95=p95,
        by_severity={s: by_severity[s] for s in _severity_order(by_severity)},
        top_alerts=sorted(by_alert.items(), key=lambda kv: (-kv[1], kv[0]))[:top],
        flapping=flapping,
        bucket_seconds=bucket,
        buckets=buckets,
        followups=followup_counts(db, since, until),
    )


def _severity_order(counts: Mapping[str, int]) -> list[str]:
    """Most severe first; unknown severities (from hand-edited rows) after, by name."""
    known = [s for s in reversed(SEVERITIES) if counts.get(s)]
    return known + sorted(s for s in counts if s not in SEVERITIES and counts[s])


def _mean(total: float, count: int) -> float | None:
    return total / count if count else None


# --------------------------------------------------------------------------- JSON


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _hours(hours: float) -> float | int:
    return int(hours) if float(hours).is_integer() else hours


def report_json(report: Report) -> dict[str, Any]:
    """The report's JSON (docs/reports.md#report-json): medians, p90s, flapping, chart series."""
    out: dict[str, Any] = {
        "window_hours": _hours(report.hours),
        "since": to_rfc3339(report.since),
        "until": to_rfc3339(report.until),
        "incidents": {
            "opened": report.opened,
            "resolved": report.resolved,
            "open": report.open,
            "reopened": report.reopened,
            "false_positive": report.false_positive,
            "escalated": report.escalated,
            "flapping": report.flapped,
            "archived": report.archived,
        },
        "mttd_seconds": _r(report.mttd.mean),
        "mtta_seconds": _r(report.mtta.mean),
        "mttr_seconds": _r(report.mttr.mean),
    }
    for name, timing in (("mttd", report.mttd), ("mtta", report.mtta), ("mttr", report.mttr)):
        out[f"{name}_median_seconds"] = _r(timing.median)
        out[f"{name}_p90_seconds"] = _r(timing.p90)
    out.update(
        {
            "recovery": {
                "attempted": report.recovery_attempted,
                "succeeded": report.recovery["succeeded"],
                "success_rate": _r(report.recovery_success_rate, 4),
                "failed": report.recovery["failed"],
                "refused": report.recovery["refused"],
                "skipped": report.recovery["skipped"],
            },
            "escalation_rate": _r(report.escalation_rate, 4),
            "false_positive_rate": _r(report.false_positive_rate, 4),
            "notifications": {
                "sent": report.notifications_sent,
                "failed": report.notifications_failed,
                "pending": report.notifications_pending,
                "p95_latency_seconds": _r(report.notification_p95),
            },
            "followups": dict(report.followups),
            "by_severity": dict(report.by_severity),
            "top_alerts": [{"alertname": a, "incidents": n} for a, n in report.top_alerts],
            "flapping": [
                {
                    "id": f.id,
                    "title": f.title,
                    "severity": f.severity,
                    "reopen_count": f.reopen_count,
                    "flapping_now": f.flapping,
                }
                for f in report.flapping
            ],
            "series": {
                "bucket_seconds": int(report.bucket_seconds),
                "buckets": [
                    {
                        "start": to_rfc3339(b.start),
                        "by_severity": dict(b.by_severity),
                        "mttr_seconds": _r(b.mttr),
                    }
                    for b in report.buckets
                ],
            },
            "definitions": dict(DEFINITIONS),
        }
    )
    return out
