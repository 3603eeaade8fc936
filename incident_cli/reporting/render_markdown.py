"""A report as markdown, for tickets and chat."""

from __future__ import annotations

from incident_cli.reporting.format import (
    human_duration,
    md_escape,
    md_table,
    pct,
    percentile_note,
    timings,
)
from incident_cli.reporting.report import DEFINITIONS, Report
from incident_cli.times import to_rfc3339


def render_markdown(report: Report) -> str:
    """For pasting into a ticket: headings, tables, the definitions."""
    hours = int(report.hours) if float(report.hours).is_integer() else report.hours
    parts = [
        f"# Incident report: last {hours}h",
        f"Window: {to_rfc3339(report.since)} → {to_rfc3339(report.until)} (UTC)",
        "## Incidents",
        md_table(
            ["opened", "resolved", "open", "reopened", "false positive", "escalated", "flapping"],
            [
                [
                    str(v)
                    for v in (
                        report.opened,
                        report.resolved,
                        report.open,
                        report.reopened,
                        report.false_positive,
                        report.escalated,
                        report.flapped,
                    )
                ]
            ],
            set(range(7)),
        ),
        "## Response times",
        md_table(
            ["", "mean", "median", "p90", "incidents"],
            [
                [
                    f"{name} ({what})",
                    human_duration(t.mean),
                    human_duration(t.median),
                    human_duration(t.p90),
                    str(t.count),
                ]
                for name, what, t in timings(report)
            ],
            {1, 2, 3, 4},
        ),
        "## Recovery, escalation, notifications",
        "\n".join(
            [
                f"- Recovery: {report.recovery_attempted} command(s) ran,"
                f" {report.recovery['succeeded']} succeeded"
                f" ({pct(report.recovery_success_rate)});"
                f" {report.recovery['refused']} refused, {report.recovery['skipped']} skipped",
                f"- Escalation rate: {pct(report.escalation_rate)} of opened incidents",
                f"- False-positive rate: {pct(report.false_positive_rate)} of resolved incidents",
                f"- Notifications: {report.notifications_sent} sent,"
                f" {report.notifications_failed} failed (dead-lettered),"
                f" {report.notifications_pending} pending;"
                f" p95 delivery latency {human_duration(report.notification_p95)}",
                f"- Follow-ups: {report.followups['opened']} opened,"
                f" {report.followups['done']} done, {report.followups['overdue']} overdue",
            ]
        ),
    ]
    if report.by_severity:
        parts += [
            "## By severity",
            md_table(
                ["severity", "incidents"],
                [[md_escape(s), str(n)] for s, n in report.by_severity.items()],
                {1},
            ),
        ]
    if report.top_alerts:
        parts += [
            "## Top alerts",
            md_table(
                ["alert", "incidents"],
                [[md_escape(a), str(n)] for a, n in report.top_alerts],
                {1},
            ),
        ]
    if report.flapping:
        parts += [
            "## Flapping incidents",
            md_table(
                ["id", "title", "severity", "reopens", "now"],
                [
                    [
                        f"#{f.id}",
                        md_escape(f.title),
                        md_escape(f.severity),
                        str(f.reopen_count),
                        "flapping" if f.flapping else "settled",
                    ]
                    for f in report.flapping
                ],
                {3},
            ),
        ]
    note = percentile_note(report)
    parts += [
        "## Definitions",
        "\n".join(f"- **{name}**: {text}" for name, text in DEFINITIONS.items())  # ours, not input
        + (f"\n\n_Note: {note}._" if note else ""),
    ]
    return "\n\n".join(parts) + "\n"
