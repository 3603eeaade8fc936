"""A report as one self-contained HTML page with its SVG charts."""

from __future__ import annotations

import html
from collections.abc import Sequence

from incident_cli.display import printable
from incident_cli.reporting.charts import incidents_chart, mttr_chart
from incident_cli.reporting.format import human_duration, pct, percentile_note, timings
from incident_cli.reporting.report import DEFINITIONS, Report
from incident_cli.times import to_rfc3339

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
margin:0;padding:24px 32px;color:#1c2733;background:#f6f8fa}
main{max-width:1000px;margin:0 auto}
h1{font-size:24px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
.sub{color:#5b6b7b;margin:0 0 20px}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(112px,1fr));gap:10px}
.card{background:#fff;border:1px solid #dde3ea;border-radius:8px;padding:10px 12px}
.card b{display:block;font-size:21px;white-space:nowrap}
.card span{color:#5b6b7b;font-size:13px}
table{border-collapse:collapse;background:#fff;border:1px solid #dde3ea;min-width:50%}
th,td{padding:6px 12px;border-bottom:1px solid #eef1f4;text-align:left}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.chart{width:100%;height:auto;background:#fff;border:1px solid #dde3ea;border-radius:8px}
.chart text{font-size:11px;fill:#5b6b7b}.chart text.empty{font-size:15px}
.chart .grid{stroke:#eef1f4}.chart .axis{stroke:#9aa7b4}
.chart .line{fill:none;stroke:#3949ab;stroke-width:2}
.chart .point{fill:#3949ab}.chart .mean{stroke:#9e9e9e;stroke-dasharray:4 4}
.warn{color:#c62828;font-weight:600}.note{color:#5b6b7b;font-size:13px}
dl{background:#fff;border:1px solid #dde3ea;border-radius:8px;padding:10px 14px}
dt{font-weight:600}dd{margin:0 0 6px 0;color:#3c4b5b}
"""


def _cell(text: object, numeric: bool = False) -> str:
    cls = ' class="n"' if numeric else ""
    return f"<td{cls}>{html.escape(printable(text))}</td>"


def _html_table(headers: Sequence[str], rows: Sequence[Sequence[object]], numeric: set[int]) -> str:
    body = "".join(
        "<tr>" + "".join(_cell(v, i in numeric) for i, v in enumerate(row)) + "</tr>"
        for row in rows
    )
    if not any(headers):
        return f"<table><tbody>{body}</tbody></table>"
    head = "".join(
        f"<th{' class=n' if i in numeric else ''}>{html.escape(h)}</th>"
        for i, h in enumerate(headers)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(report: Report) -> str:
    """One self-contained page: inline CSS and SVG, no scripts, nothing fetched."""
    hours = int(report.hours) if float(report.hours).is_integer() else report.hours
    cards = [
        ("opened", str(report.opened)),
        ("resolved", str(report.resolved)),
        ("still open", str(report.open)),
        ("MTTD", human_duration(report.mttd.mean)),
        ("MTTA", human_duration(report.mtta.mean)),
        ("MTTR", human_duration(report.mttr.mean)),
        ("recovery success", pct(report.recovery_success_rate)),
        ("escalated", pct(report.escalation_rate)),
    ]
    card_html = "".join(
        f'<div class="card"><b>{html.escape(v)}</b><span>{html.escape(k)}</span></div>'
        for k, v in cards
    )
    timing_rows: list[list[object]] = [
        [
            f"{name} — {what}",
            human_duration(t.mean),
            human_duration(t.median),
            human_duration(t.p90),
            t.count,
        ]
        for name, what, t in timings(report)
    ]
    failed = report.notifications_failed
    facts: list[list[object]] = [
        ["incidents reopened", report.reopened],
        ["false positives", f"{report.false_positive} ({pct(report.false_positive_rate)})"],
        ["escalated", f"{report.escalated} ({pct(report.escalation_rate)})"],
        [
            "recovery commands",
            f"{report.recovery['succeeded']} of {report.recovery_attempted} succeeded"
            f" ({pct(report.recovery_success_rate)}); {report.recovery['refused']} refused,"
            f" {report.recovery['skipped']} skipped",
        ],
        [
            "notifications",
            f"{report.notifications_sent} sent, {failed} failed,"
            f" {report.notifications_pending} pending",
        ],
        ["p95 delivery latency", human_duration(report.notification_p95)],
        [
            "follow-ups",
            f"{report.followups['opened']} opened, {report.followups['done']} done,"
            f" {report.followups['overdue']} overdue",
        ],
    ]
    sections = [
        f"<h1>Incident report — last {html.escape(str(hours))}h</h1>",
        f'<p class="sub">{html.escape(str(to_rfc3339(report.since)))} →'
        f" {html.escape(str(to_rfc3339(report.until)))} (UTC)</p>",
        f'<div class="cards">{card_html}</div>',
        "<h2>Incidents opened</h2>",
        incidents_chart(report),
        "<h2>Time to resolve</h2>",
        mttr_chart(report),
        "<h2>Response times</h2>",
        _html_table(["", "mean", "median", "p90", "incidents"], timing_rows, {1, 2, 3, 4}),
        "<h2>Recovery, escalation, notifications</h2>",
        _html_table(["", ""], facts, set()),
    ]
    if failed:
        sections.append(f'<p class="warn">{failed} notification(s) were dead-lettered.</p>')
    if report.by_severity:
        sections += [
            "<h2>By severity</h2>",
            _html_table(["severity", "incidents"], list(report.by_severity.items()), {1}),
        ]
    if report.top_alerts:
        sections += [
            "<h2>Top alerts</h2>",
            _html_table(["alert", "incidents"], list(report.top_alerts), {1}),
        ]
    if report.flapping:
        sections += [
            "<h2>Flapping incidents</h2>",
            _html_table(
                ["id", "title", "severity", "reopens", "now"],
                [
                    [f.id, f.title, f.severity, f.reopen_count, "flapping" if f.flapping else ""]
                    for f in report.flapping
                ],
                {0, 3},
            ),
        ]
    note = percentile_note(report)
    definitions = "".join(
        f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in DEFINITIONS.items()
    )
    sections += ["<h2>Definitions</h2>", f"<dl>{definitions}</dl>"]
    if note:
        sections.append(f'<p class="note">{html.escape(note)}.</p>')
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        # No network: block every fetch even if someone pastes a URL into a label.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\';'
        " style-src 'unsafe-inline'; img-src data:\">"
        f"<title>Incident report — last {html.escape(str(hours))}h</title>"
        f"<style>{_CSS}</style></head><body><main>\n"
        + "\n".join(sections)
        + "\n</main></body></html>\n"
    )
