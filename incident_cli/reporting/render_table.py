"""A report as rich tables for a terminal (plain text without colour or a TTY)."""

from __future__ import annotations

from typing import Any

from incident_cli.display import safe_markup
from incident_cli.reporting.format import (
    NONE,
    RICH_STYLE,
    human_duration,
    pct,
    percentile_note,
    timings,
    window_text,
)
from incident_cli.reporting.report import Report


def render_table(report: Report, console: Any) -> None:
    """Rich tables an on-call engineer reads at a glance (plain text without colour or TTY)."""
    out = console
    out.print(f"[bold]Incident report[/] — {window_text(report)}")
    if not report.opened:
        out.print("no incidents opened in this window")
    for table in _summary_tables(report):
        out.print(table)
    out.print(_rates_table(report))
    out.print()
    for table in _breakdown_tables(report):
        out.print(table)
    note = percentile_note(report)
    if note:
        out.print(f"[dim]Note: {note}.[/]")
    out.print(
        "[dim]MTTD = opened - started, MTTA = acknowledged - opened, MTTR = resolved - started;"
        " means over the incidents each applies to; — = nothing to measure.[/]"
    )


def _summary_tables(report: Report) -> list[Any]:
    """The counts, then the timings."""
    from rich import box
    from rich.table import Table

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
    for name, what, t in timings(report):
        timing.add_row(
            f"[bold]{name}[/]",
            human_duration(t.mean),
            human_duration(t.median),
            human_duration(t.p90),
            str(t.count),
            f"[dim]{what}[/]",
        )
    return [counts, timing]


def _rates_table(report: Report) -> Any:
    """Recovery, escalation, false positives, notifications and follow-ups, one line each."""
    from rich.table import Table

    rates = Table(box=None, pad_edge=False, show_header=False)
    rates.add_column(style="bold")
    rates.add_column()
    rec = report.recovery
    extra = "".join(
        f"; {rec[k]} {k}" for k in ("refused", "skipped") if rec[k]
    )  # never ran, so not in the rate
    rates.add_row(
        "Recovery",
        f"{pct(report.recovery_success_rate)} succeeded"
        f" ({rec['succeeded']} of {report.recovery_attempted} commands that ran{extra})"
        if report.recovery_attempted
        else f"{NONE} (no recovery command ran{extra})",
    )
    rates.add_row(
        "Escalated",
        f"{pct(report.escalation_rate)} ({report.escalated} of {report.opened} incidents)"
        if report.opened
        else f"{NONE} (no incidents)",
    )
    rates.add_row(
        "False positives",
        f"{pct(report.false_positive_rate)}"
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
    return rates


def _breakdown_tables(report: Report) -> list[Any]:
    """By severity beside the top alerts, and the incidents that flapped."""
    from rich import box
    from rich.table import Table

    tables = []
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
                f"[{RICH_STYLE.get(s_name, '')}]{safe_markup(s_name)}[/]" if s_name else "",
                str(s_count),
                "",
                safe_markup(a_name, limit=80),
                str(a_count),
            )
        tables.append(side)

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
        tables.append(flap)
    return tables
