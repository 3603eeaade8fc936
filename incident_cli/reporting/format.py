"""What every rendering of a report shares: durations, rates, the window, colours, escaping."""

from __future__ import annotations

import re
from collections.abc import Sequence

from incident_cli.display import printable
from incident_cli.reporting.report import Report, Timing
from incident_cli.times import format_duration, to_rfc3339

NONE = "—"  # a mean or rate over nothing: not 0

SEVERITY_COLOURS = {
    "critical": "#c62828",
    "error": "#ef6c00",
    "warning": "#f9a825",
    "info": "#1e88e5",
}

OTHER_COLOUR = "#78909c"

RICH_STYLE = {"critical": "bold red", "error": "red", "warning": "yellow", "info": "cyan"}


def human_duration(seconds: float | None) -> str:
    """`4m 10s`; tenths under ten seconds; — for nothing to measure."""
    if seconds is None:
        return NONE
    if seconds < 10:
        return f"{seconds:.1f}s"
    return format_duration(seconds)


def three(t: Timing) -> list[str]:
    return [human_duration(t.mean), human_duration(t.median), human_duration(t.p90)]


def pct(rate: float | None) -> str:
    return NONE if rate is None else f"{rate * 100:.1f}%"


def window_text(report: Report) -> str:
    hours = int(report.hours) if float(report.hours).is_integer() else report.hours
    return f"last {hours}h ({to_rfc3339(report.since)} → {to_rfc3339(report.until)})"


def timings(report: Report) -> list[tuple[str, str, Timing]]:
    return [
        ("MTTD", "detect: opened - started", report.mttd),
        ("MTTA", "acknowledge: acknowledged - opened", report.mtta),
        ("MTTR", "resolve: resolved - started", report.mttr),
    ]


def percentile_note(report: Report) -> str | None:
    if not report.archived:
        return None
    return (
        f"{report.archived} archived incident(s) count in the totals and means;"
        " medians and p90s cover only incidents still in the DB"
    )


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


_W, _H = 960, 280

_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 16, 16, 44
