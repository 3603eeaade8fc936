"""The report's SVG charts: incidents by severity and MTTR per bucket, with their axes."""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from incident_cli.display import printable
from incident_cli.reporting.format import (
    _BOTTOM,
    _H,
    _LEFT,
    _RIGHT,
    _TOP,
    _W,
    OTHER_COLOUR,
    SEVERITY_COLOURS,
    human_duration,
)
from incident_cli.reporting.report import Report
from incident_cli.times import format_duration, to_rfc3339


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
