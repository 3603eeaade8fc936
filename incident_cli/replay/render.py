"""`incident replay`'s output: sections of rows, as a table or markdown, one config or two side
by side with their differences marked; and the JSON."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from incident_cli.display import printable
from incident_cli.replay.engine import STOPPED_BY, Replay
from incident_cli.times import format_duration, to_rfc3339

Cell = str | int


@dataclass(frozen=True)
class Section:
    title: str
    headers: tuple[str, ...]
    keys: int  # how many leading columns name the row (the rest are its numbers)
    rows: list[tuple[Cell, ...]]


def sections(result: Replay) -> list[Section]:
    """Every part of the summary, as rows."""
    return [
        _incidents(result),
        Section(
            "Notifications (after storm folding and flapping holds; rate limits delay, never drop)",
            ("channel", "event", "count"),
            2,
            [(c, e, n) for c, e, n in result.notifications],
        ),
        Section(
            "Recovery actions (nothing ran)",
            (
                "rule",
                "kind",
                "planned",
                "would run",
                *(f"stopped: {s}" for s in STOPPED_BY),
                "other",
            ),
            2,
            [
                (
                    a.rule,
                    a.kind,
                    a.planned,
                    a.would_run,
                    *(a.stopped_by.get(s, 0) for s in STOPPED_BY),
                    sum(n for s, n in a.stopped_by.items() if s not in STOPPED_BY),
                )
                for a in result.actions
            ],
        ),
        Section(
            "Escalations",
            ("rule", "escalations"),
            1,
            sorted(Counter(rule for rule, _, _, _ in result.escalations).items()),
        ),
        Section(
            "Alerts that matched no rule (the `default` rule took them)",
            ("alertname", "alerts", "incidents"),
            1,
            [(name, alerts, n) for name, alerts, n in result.unmatched],
        ),
    ]


def _incidents(result: Replay) -> Section:
    by_rule: dict[str, list[Any]] = defaultdict(list)
    for incident in result.incidents:
        by_rule[incident.rule].append(incident)
    rows: list[tuple[Cell, ...]] = []
    for rule in sorted(by_rule):
        members = by_rule[rule]
        durations = [i.resolved_at - i.opened_at for i in members if i.resolved_at is not None]
        rows.append(
            (
                rule,
                len(members),
                sum(i.reopen_count for i in members),
                sum(1 for i in members if i.flapping),
                sum(1 for i in members if i.resolution in ("auto", "recovered")),
                format_duration(statistics.median(durations)) if durations else "-",
                format_duration(max(durations)) if durations else "-",
            )
        )
    return Section(
        "Incidents per rule",
        ("rule", "opened", "reopened", "flapping", "auto-resolved", "median", "max"),
        1,
        rows,
    )


def header(result: Replay, path: str) -> str:
    return (
        f"replay of {path}: {to_rfc3339(result.window.since)} to"
        f" {to_rfc3339(result.window.until)}, step {format_duration(result.window.step)},"
        f" {result.ticks} ticks"
    )


def render(results: Sequence[Replay], paths: Sequence[str], fmt: str) -> str:
    """The text output: one replay, or two side by side (`a → b` where they differ, rows
    with a difference marked `*`)."""
    markdown = fmt == "markdown"
    lines = [("# " if markdown else "") + header(results[0], paths[0])]
    if len(results) == 2:
        lines.append(f"compared with {paths[1]}: `a → b` where they differ, rows marked *")
    per_result = [sections(r) for r in results]
    for index, section in enumerate(per_result[0]):
        if len(results) == 2:
            section = _side_by_side(section, per_result[1][index])
        lines.append("")
        lines.append(("## " if markdown else "") + section.title)
        if not section.rows:
            lines.append("none")
            continue
        lines.extend(_markdown(section) if markdown else _table(section))
    return "\n".join(lines) + "\n"


def _side_by_side(a: Section, b: Section) -> Section:
    left = {row[: a.keys]: row[a.keys :] for row in a.rows}
    right = {row[: b.keys]: row[b.keys :] for row in b.rows}
    width = len(a.headers) - a.keys
    rows: list[tuple[Cell, ...]] = []
    for key in sorted(left.keys() | right.keys(), key=lambda k: tuple(str(c) for c in k)):
        x = left.get(key, ("-",) * width)
        y = right.get(key, ("-",) * width)
        cells = tuple(str(p) if p == q else f"{p} → {q}" for p, q in zip(x, y, strict=True))
        rows.append(("*" if x != y else "", *key, *cells))
    return Section(a.title, ("", *a.headers), a.keys + 1, rows)


def _table(section: Section) -> list[str]:
    cells = [[printable(str(c)) for c in row] for row in section.rows]
    widths = [max(len(h), *(len(row[i]) for row in cells)) for i, h in enumerate(section.headers)]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.ljust(w) if i < section.keys else v.rjust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    return [line(section.headers), line(["-" * w for w in widths]), *map(line, cells)]


def _markdown(section: Section) -> list[str]:
    from incident_cli.reporting.format import md_escape, md_table

    right = set(range(section.keys, len(section.headers)))
    rows = [[md_escape(str(c)) for c in row] for row in section.rows]
    return md_table([md_escape(h) for h in section.headers], rows, right).split("\n")


def to_json(results: Sequence[Replay]) -> dict[str, Any]:
    """One replay's JSON; with --compare, {"base": ..., "compare": ...}."""
    if len(results) == 1:
        return results[0].to_json()
    return {"base": results[0].to_json(), "compare": results[1].to_json()}
