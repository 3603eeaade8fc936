"""Rendering a Report: rich tables for terminals, markdown for tickets, one HTML page with SVG."""

from __future__ import annotations

import html
import math
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from incident_cli.display import printable, safe_markup
from incident_cli.reporting.report import DEFINITIONS, Report, Timing
from incident_cli.times import format_duration, to_rfc3339

NONE = "—"  # a mean or rate over nothing: not 0
SEVERITY_COLOURS = {
    "critical": "#c62828",
    "error": "#ef6c00",
    "warning": "#f9a825",
    "info": "#1e88e5",
}
OTHER_COLOUR = "#78909c"
_RICH_STYLE = {"critical": "bold red", "error": "red", "warning": "yellow", "info": "cyan"}


def human_duration(seconds: float | None) -> str:
    """`4m 10s`; tenths under ten seconds; — for nothing to measure."""
    if seconds is None:
        return NONE
    if seconds < 10:
        return f"{seconds:.1f}s"
    return format_duration(seconds)


def _three(t: Timing) -> list[str]:
    return [human_duration(t.mean), human_duration(t.median), human_duration(t.p90)]


def _pct(rate: float | None) -> str:
    return NONE if rate is None else f"{rate * 100:.1f}%"


def _window(report: Report) -> str:
    hours = int(report.hours) if float(report.hours).is_integer() else report.hours
    return f"last {hours}h ({to_rfc3339(report.since)} → {to_rfc3339(report.until)})"


def _timings(report: Report) -> list[tuple[str, str, Timing]]:
    return [
        ("MTTD", "detect: opened - started", report.mttd),
        ("MTTA", "acknowledge: acknowledged - opened", report.mtta),
        ("MTTR", "resolve: resolved - started", report.mttr),
    ]


def _percentile_note(report: Report) -> str | None:
    if not report.archived:
        return None
    return (
        f"{report.archived} archived incident(s) count in the totals and means;"
        " medians and p90s cover only incidents still in the DB"
    )


# --------------------------------------------------------------------------- terminal


def render_table(report: Report, console: Any) -> None:
    """Rich tables an on-call engineer reads at a glance (plain text without colour or TTY)."""
    from rich import box
    from rich.table import Table

    out = console
    out.print(f"[bold]Incident report[/] — {_window(report)}")
    if not report.opened:
        out.print("no incidents opened in this window")

    counts = Table(box=box.SIMPLE_HEAD, pad_edge=False, header_style="bold")
    for name in ("opened", "resolved", "open", "reopened", "false positive", "escalated"):
        counts.add_column(name.upper(), justify="right")
    counts.add_column("FLAPPING", justify="right")
    counts.add_row(
        str(report.opened),
        str(report.resolved),
        f"[yellow]{report.open}[/]" if report.open else "0",
        str(report.reopened),
        str(report.false_positive),
        str(report.escalated),
        str(report.flapped),
    )
    out.print(counts)

    timing = Table(box=box.SIMPLE_HEAD, pad_edge=False, header_style="bold")
    for column, justify in (
        ("", "left"),
        ("MEAN", "right"),
        ("MEDIAN", "right"),
        ("P90", "right"),
        ("N", "right"),
        ("MEASURES", "left"),
    ):
        timing.add_column(column, justify=justify)  # type: ignore[arg-type]
    for name, what, t in _timings(report):
        timing.add_row(
            f"[bold]{name}[/]",
            human_duration(t.mean),
            human_duration(t.median),
            human_duration(t.p90),
            str(t.count),
            f"[dim]{what}[/]",
        )
    out.print(timing)

    rates = Table(box=None, pad_edge=False, show_header=False)
    rates.add_column(style="bold")
    rates.add_column()
    rec = report.recovery
    extra = "".join(
        f"; {rec[k]} {k}" for k in ("refused", "skipped") if rec[k]
    )  # never ran, so not in the rate
    rates.add_row(
        "Recovery",
        f"{_pct(report.recovery_success_rate)} succeeded"
        f" ({rec['succeeded']} of {report.recovery_attempted} commands that ran{extra})"
        if report.recovery_attempted
        else f"{NONE} (no recovery command ran{extra})",
    )
    rates.add_row(
        "Escalated",
        f"{_pct(report.escalation_rate)} ({report.escalated} of {report.opened} incidents)"
        if report.opened
        else f"{NONE} (no incidents)",
    )
    rates.add_row(
        "False positives",
        f"{_pct(report.false_positive_rate)}"
        f" ({report.false_positive} of {report.resolved} resolved incidents)"
        if report.resolved
        else f"{NONE} (none resolved)",
    )
    failed = report.notifications_failed
    rates.add_row(
        "Notifications",
        f"{report.notifications_sent} sent, "
        + (f"[bold red]{failed} failed[/]" if failed else "0 failed")
        + f", {report.notifications_pending} pending;"
        f" p95 delivery {human_duration(report.notification_p95)}",
    )
    fu = report.followups
    rates.add_row(
        "Follow-ups",
        f"{fu['opened']} opened, {fu['done']} done, "
        + (f"[bold red]{fu['overdue']} overdue[/]" if fu["overdue"] else "0 overdue"),
    )
    out.print(rates)
    out.print()

    if report.by_severity or report.top_alerts:
        side = Table(box=box.SIMPLE_HEAD, pad_edge=False, header_style="bold")
        side.add_column("SEVERITY")
        side.add_column("N", justify="right")
        side.add_column("  ")
        side.add_column("TOP ALERTS")
        side.add_column("N", justify="right")
        sev = list(report.by_severity.items())
        for i in range(max(len(sev), len(report.top_alerts))):
            s_name, s_count = sev[i] if i < len(sev) else ("", "")
            a_name, a_count = report.top_alerts[i] if i < len(report.top_alerts) else ("", "")
            side.add_row(
                f"[{_RICH_STYLE.get(s_name, '')}]{safe_markup(s_name)}[/]" if s_name else "",
                str(s_count),
                "",
                safe_markup(a_name, limit=80),
                str(a_count),
            )
        out.print(side)

    if report.flapping:
        flap = Table(box=box.SIMPLE_HEAD, pad_edge=False, header_style="bold", title_justify="left")
        for column in ("ID", "FLAPPING INCIDENT", "SEVERITY", "REOPENS", "NOW"):
            flap.add_column(column)
        for f in report.flapping:
            flap.add_row(
                str(f.id),
                safe_markup(f.title, limit=100),
                safe_markup(f.severity),
                str(f.reopen_count),
                "flapping" if f.flapping else "settled",
            )
        out.print(flap)

    note = _percentile_note(report)
    if note:
        out.print(f"[dim]Note: {note}.[/]")
    out.print(
        "[dim]MTTD = opened - started, MTTA = acknowledged - opened, MTTR = resolved - started;"
        " means over the incidents each applies to; — = nothing to measure.[/]"
    )


# --------------------------------------------------------------------------- markdown

# Characters that could start markup inside a line (line-start ones like `-` cannot occur:
# escaped text never starts a line). `&` so that `&amp;` stays literal.
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>#|~&])")


def md_escape(text: str, limit: int = 200) -> str:
    """One line of untrusted text made inert in a markdown table cell or paragraph."""
    text = " ".join(printable(text, limit=limit).split())
    return _MD_SPECIAL.sub(r"\\\1", text)


def md_table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> str:
    lines = ["| " + " | ".join(headers) + " |"]
    lines.append(
        "| " + " | ".join("---:" if i in right else "---" for i in range(len(headers))) + " |"
    )
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return "\n".join(lines)


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
                for name, what, t in _timings(report)
            ],
            {1, 2, 3, 4},
        ),
        "## Recovery, escalation, notifications",
        "\n".join(
            [
                f"- Recovery: {report.recovery_attempted} command(s) ran,"
                f" {report.recovery['succeeded']} succeeded"
                f" ({_pct(report.recovery_success_rate)});"
                f" {report.recovery['refused']} refused, {report.recovery['skipped']} skipped",
                f"- Escalation rate: {_pct(report.escalation_rate)} of opened incidents",
                f"- False-positive rate: {_pct(report.false_positive_rate)} of resolved incidents",
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
    note = _percentile_note(report)
    parts += [
        "## Definitions",
        "\n".join(f"- **{name}**: {text}" for name, text in DEFINITIONS.items())  # ours, not input
        + (f"\n\n_Note: {note}._" if note else ""),
    ]
    return "\n\n".join(parts) + "\n"


# --------------------------------------------------------------------------- HTML


def _bucket_label(start: float, bucket: float) -> str:
    when = datetime.fromtimestamp(start, UTC)
    return when.strftime("%H:%M") if bucket < 86400 else when.strftime("%m-%d")


def count_ticks(value: float) -> list[float]:
    """0 and up to ~5 whole-number ticks covering `value`: steps of 1, 2, 5 x 10^n."""
    step = 1.0
    while step * 4 < value:
        for m in (2.0, 2.5, 2.0):  # 1 → 2 → 5 → 10 → 20 → 50 → ...
            step *= m
            if step * 4 >= value:
                break
    top = max(math.ceil(value / step), 1)
    return [step * i for i in range(top + 1)]


_DURATION_STEPS = (1, 5, 10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200)


def duration_ticks(value: float) -> list[float]:
    """0 and up to ~5 ticks on round durations (1m, 5m, 30m, 1h, ...) covering `value`."""
    step = float(next((s for s in _DURATION_STEPS if s * 4 >= value), 0))
    if not step:
        step = 86400.0 * count_ticks(value / 86400)[1]
    top = max(math.ceil(value / step), 1)
    return [step * i for i in range(top + 1)]


_W, _H = 960, 280
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 16, 16, 44


def _axes(
    n: int, ticks: Sequence[float], label: Callable[[float], str], x_labels: Sequence[str]
) -> list[str]:
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    out = []
    for value in ticks:
        y = _TOP + plot_h - plot_h * value / ticks[-1]
        out.append(
            f'<line x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{html.escape(label(value))}</text>"
        )
    step = max(1, math.ceil(n / 12))
    slot = plot_w / max(n, 1)
    for i, text in enumerate(x_labels):
        if i % step:
            continue
        x = _LEFT + slot * (i + 0.5)
        out.append(
            f'<text x="{x:.1f}" y="{_H - _BOTTOM + 16}" text-anchor="middle">'
            f"{html.escape(text)}</text>"
        )
    out.append(
        f'<line x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{_TOP + plot_h}" y2="{_TOP + plot_h}"'
        ' class="axis"/>'
    )
    return out


def _svg(title: str, body: list[str], legend: list[tuple[str, str]], chart_id: str) -> str:
    items = []
    x = _LEFT
    for name, colour in legend:
        items.append(
            f'<rect x="{x}" y="{_H - 14}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{x + 14}" y="{_H - 5}">{html.escape(printable(name))}</text>'
        )
        x += 24 + 8 * len(name)
    return (
        f'<svg id="{chart_id}" class="chart" xmlns="http://www.w3.org/2000/svg"'
        f' viewBox="0 0 {_W} {_H}" role="img" aria-label="{html.escape(title)}">'
        f"<title>{html.escape(title)}</title>" + "".join(body) + "".join(items) + "</svg>"
    )


def _empty_note(text: str) -> str:
    x, y = (_LEFT + _W - _RIGHT) / 2, (_TOP + _H - _BOTTOM) / 2
    return f'<text class="empty" x="{x:.0f}" y="{y:.0f}" text-anchor="middle">{text}</text>'


def _severity_colour(severity: str) -> str:
    return SEVERITY_COLOURS.get(severity, OTHER_COLOUR)


def incidents_chart(report: Report) -> str:
    """Stacked bars: incidents opened per bucket, by severity."""
    buckets = report.buckets
    n = len(buckets)
    unit = "hour" if report.bucket_seconds < 86400 else "day"
    if report.bucket_seconds > 86400:
        unit = f"{int(report.bucket_seconds // 86400)} days"
    totals = [sum(b.by_severity.values()) for b in buckets]
    ticks = count_ticks(max(totals, default=0))
    y_max = ticks[-1]
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    slot = plot_w / max(n, 1)
    bar_w = max(slot * 0.8, 1.0)
    labels = [_bucket_label(b.start, report.bucket_seconds) for b in buckets]
    body = _axes(n, ticks, lambda v: f"{v:g}", labels)
    severities = list(report.by_severity)
    for i, b in enumerate(buckets):
        x = _LEFT + slot * i + (slot - bar_w) / 2
        y = float(_TOP + plot_h)
        for severity in severities:
            count = b.by_severity.get(severity, 0)
            if not count:
                continue
            h = plot_h * count / y_max
            y -= h
            tip = printable(f"{to_rfc3339(b.start)}: {count} {severity}")
            body.append(
                f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}"'
                f' fill="{_severity_colour(severity)}"><title>{html.escape(tip)}</title></rect>'
            )
    if not any(totals):
        body.append(_empty_note("No incidents opened in this window"))
    legend = [(s, _severity_colour(s)) for s in severities]
    return _svg(f"Incidents opened per {unit}, by severity", body, legend, "chart-incidents")


def mttr_chart(report: Report) -> str:
    """MTTR of the incidents opened in each bucket, as a line with gaps where none resolved."""
    buckets = report.buckets
    n = len(buckets)
    values = [b.mttr for b in buckets]
    ticks = duration_ticks(max((v for v in values if v is not None), default=0))
    y_max = ticks[-1]
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    slot = plot_w / max(n, 1)
    labels = [_bucket_label(b.start, report.bucket_seconds) for b in buckets]
    body = _axes(n, ticks, lambda v: format_duration(v) if v else "0", labels)
    runs: list[list[tuple[float, float]]] = [[]]
    for i, value in enumerate(values):
        if value is None:
            if runs[-1]:
                runs.append([])
            continue
        x = _LEFT + slot * (i + 0.5)
        y = _TOP + plot_h - plot_h * min(value, y_max) / y_max
        runs[-1].append((x, y))
        tip = f"{to_rfc3339(buckets[i].start)}: MTTR {human_duration(value)}"
        body.append(
            f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="3">'
            f"<title>{html.escape(tip)}</title></circle>"
        )
    for run in runs:
        if len(run) > 1:
            points = " ".join(f"{x:.1f},{y:.1f}" for x, y in run)
            body.insert(0, f'<polyline class="line" points="{points}"/>')
    if report.mttr.mean is not None:
        y = _TOP + plot_h - plot_h * min(report.mttr.mean, y_max) / y_max
        body.append(
            f'<line class="mean" x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}">'
            f"<title>mean MTTR {human_duration(report.mttr.mean)}</title></line>"
        )
    if all(v is None for v in values):
        body.append(_empty_note("No incident opened in this window has been resolved"))
    legend = [("MTTR of incidents opened then", "#3949ab"), ("mean over window", "#9e9e9e")]
    return _svg("MTTR over the window", body, legend, "chart-mttr")


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
        ("recovery success", _pct(report.recovery_success_rate)),
        ("escalated", _pct(report.escalation_rate)),
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
        for name, what, t in _timings(report)
    ]
    failed = report.notifications_failed
    facts: list[list[object]] = [
        ["incidents reopened", report.reopened],
        ["false positives", f"{report.false_positive} ({_pct(report.false_positive_rate)})"],
        ["escalated", f"{report.escalated} ({_pct(report.escalation_rate)})"],
        [
            "recovery commands",
            f"{report.recovery['succeeded']} of {report.recovery_attempted} succeeded"
            f" ({_pct(report.recovery_success_rate)}); {report.recovery['refused']} refused,"
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
    note = _percentile_note(report)
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
