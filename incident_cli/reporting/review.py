"""The post-incident review draft (`report --incident ID`): markdown from one incident's rows."""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

from incident_cli.display import printable
from incident_cli.errors import NotFound
from incident_cli.reporting.format import human_duration, md_escape, md_table
from incident_cli.store import actions as store_actions
from incident_cli.store import outbox as store_outbox
from incident_cli.store import timeline as store_timeline
from incident_cli.store.alerts import alertnames
from incident_cli.store.database import Database
from incident_cli.store.incidents import action_commands, get_incident
from incident_cli.times import format_duration, to_rfc3339


def _at(epoch: float | None) -> str:
    return to_rfc3339(epoch) or "—"


def _after(later: float | None, earlier: float | None) -> str:
    if later is None or earlier is None:
        return ""
    return human_duration(max(later - earlier, 0))


def _commands(argvs: list[list[str]]) -> str:
    """Every command of an action, each shell-quoted in a code span: ready to copy and paste."""
    return "; ".join(_code_span(shlex.join(argv)) for argv in argvs)


def _code_span(text: str) -> str:
    """Markdown code for a table cell: a fence longer than any run of backticks inside it, and
    `\\|` so that a pipe does not split the cell (GitHub shows it as `|`)."""
    text = printable(text).replace("|", "\\|")
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or fence != "`" else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def review_markdown(db: Database, incident_id: int, now: float) -> str:
    """A draft for the post-incident review: facts filled in, judgement left to people."""
    incident = get_incident(db, incident_id)
    if incident is None:
        raise NotFound(f"no incident {incident_id}")
    i = incident
    timeline = store_timeline.of_incident(db, i.id, by_time=True)
    actions = store_actions.of_incident(db, i.id)
    notes = store_outbox.of_incident(db, i.id)

    status = i.status + (f" ({i.resolution})" if i.resolution else "")
    labels = ", ".join(f"{k}={v}" for k, v in i.labels.items())
    summary_rows = [
        ["Incident", f"#{i.id} {md_escape(i.title)}"],
        ["Severity", md_escape(i.severity)],
        ["Status", md_escape(status)],
        ["Rule → handler", md_escape(f"{i.rule} → {i.handler}")],
        ["Source", md_escape(i.source)],
        ["Labels", md_escape(labels, 500) or "—"],
    ]
    # A grouped incident's alerts by name: its title and the reports count it by its own name.
    names: dict[str, int] = {}
    for name in alertnames(db, i.id):
        names[name or "?"] = names.get(name or "?", 0) + 1
    if names:
        counted = ", ".join(f"{name} x{count}" for name, count in names.items())
        summary_rows.append(["Alerts", md_escape(f"{sum(names.values())}: {counted}", 500)])
    for key in ("summary", "description", "runbook_url"):
        if i.annotations.get(key):
            summary_rows.append([key.replace("_", " ").capitalize(), md_escape(i.annotations[key])])

    began = i.started_at if i.started_at is not None else i.opened_at
    if i.resolved_at is not None:
        duration = format_duration(max(i.resolved_at - began, 0))
        end = f"{_at(i.resolved_at)} ({md_escape(i.resolution or 'resolved')})"
    else:
        duration = f"ongoing: {format_duration(max(now - began, 0))} so far"
        end = "not resolved yet"
    impact = [
        f"- **Began:** {_at(began)}"
        + ("" if i.started_at is not None else " (the source gave no start time: detection time)"),
        f"- **Ended:** {end}",
        f"- **Duration:** {duration}",
    ]
    if i.reopen_count:
        impact.append(f"- **Reopened:** {i.reopen_count} time(s)" + (", flapping" * i.flapping))

    acked_by = f" by {md_escape(i.acknowledged_by)}" if i.acknowledged_by else ""
    ack_events = [e for e in timeline if e["kind"] == "acknowledged"]
    if not acked_by and ack_events:
        acked_by = f" by {md_escape(ack_events[-1]['actor'])}"

    def measured(label: str, later: float | None, earlier: float | None) -> str:
        span = _after(later, earlier)
        return f"{label} {span}" if span else ""

    milestones: list[tuple[float | None, list[str]]] = [
        (i.started_at, ["Problem began (started_at)", _at(i.started_at), ""]),
        (
            i.opened_at,
            ["Detected (opened_at)", _at(i.opened_at), measured("MTTD", i.opened_at, i.started_at)],
        ),
        (
            i.acknowledged_at,
            [
                ("Acknowledged" + acked_by) if i.acknowledged_at else "Not acknowledged",
                _at(i.acknowledged_at),
                measured("MTTA", i.acknowledged_at, i.opened_at),
            ],
        ),
    ]
    if i.fixed_at is not None:
        milestones.append(
            (
                i.fixed_at,
                [
                    "Recovery action succeeded",
                    _at(i.fixed_at),
                    measured("after start:", i.fixed_at, began),
                ],
            )
        )
    escalated = [e["at"] for e in timeline if e["kind"] == "escalated"]
    if i.escalated_at is not None or escalated:
        when = i.escalated_at if i.escalated_at is not None else escalated[0]
        milestones.append(
            (when, ["Escalated", _at(when), measured("after detection:", when, i.opened_at)])
        )
    milestones.append(
        (
            i.resolved_at,
            ["Resolved (resolved_at)", _at(i.resolved_at), measured("MTTR", i.resolved_at, began)],
        )
    )
    # In the order they happened; what has not happened yet goes last.
    milestones.sort(key=lambda m: (m[0] is None, m[0] or 0.0))

    parts = [
        f"# Post-incident review: #{i.id} {md_escape(i.title)}",
        f"_Draft generated by `incident report --incident {i.id}` at {_at(now)}."
        " Facts come from the incident's timeline; check them and fill in the open sections._",
        "## Summary",
        md_table(["", ""], summary_rows, set()),
        "## Impact window",
        "\n".join(impact),
        "## Detection, acknowledgement and resolution",
        md_table(["milestone", "at (UTC)", "took"], [row for _, row in milestones], set())
        + "\n\n_MTTD = opened - started, MTTA = acknowledged - opened,"
        " MTTR = resolved - started._",
        "## Timeline",
        md_table(
            ["at (UTC)", "event", "by", "details"],
            [
                [
                    _at(e["at"]),
                    md_escape(e["kind"]),
                    md_escape(e["actor"]),
                    md_escape(e["message"], 300) + _event_data(e["data"]),
                ]
                for e in timeline
            ],
            set(),
        )
        if timeline
        else "_No timeline events._",
        "## Actions",
        _actions_table(actions, action_commands(db, i.id))
        if actions
        else "_No recovery, diagnostic or escalation actions._",
        "## Notifications",
        _notifications_table(notes) if notes else "_No notifications were queued._",
        "## Root cause\n\n_To be written._",
        "## Contributing factors\n\n_To be written._",
        "## Follow-ups\n\n" + followups_markdown(db, i.id, now),
    ]
    return "\n\n".join(parts) + "\n"


def followups_markdown(db: Database, incident_id: int, now: float) -> str:
    """The incident's tracked follow-ups as a checklist (`incident followup add` adds them)."""
    from incident_cli.lifecycle.followups import list_followups

    items = list_followups(db, now, incident_id=incident_id)
    if not items:
        return "- [ ] _Owner — action — due date_"
    lines = []
    for f in items:
        mark = "x" if f.done_at is not None else " "
        facts = [f"#{f.id}"]
        if f.owner:
            facts.append(f"owner {md_escape(f.owner, 100)}")
        if f.due_at is not None:
            facts.append(f"due {_at(f.due_at)}" + (" **overdue**" if f.overdue(now) else ""))
        if f.done_at is not None:
            facts.append(f"done {_at(f.done_at)} by {md_escape(f.done_by or '', 100)}")
            if f.done_note:
                facts.append(md_escape(f.done_note, 300))
        lines.append(f"- [{mark}] {md_escape(f.text, 500)} ({'; '.join(facts)})")
    return "\n".join(lines)


def _event_data(text: str | None) -> str:
    """The few data fields a reader needs inline (exit codes, channels); the rest is in `show`."""
    if not text:
        return ""
    try:
        data = json.loads(text)
    except ValueError:
        return ""
    if not isinstance(data, dict):
        return ""
    keep = {
        k: data[k]
        for k in ("action_id", "attempt", "exit_code", "channel", "status", "from", "to")
        if k in data
    }
    if not keep:
        return ""
    return " (" + md_escape(", ".join(f"{k} {v}" for k, v in keep.items())) + ")"


def _actions_table(rows: list[dict[str, Any]], commands: dict[int, list[list[str]]]) -> str:
    return md_table(
        ["#", "kind", "what", "status", "exit", "tries", "started", "finished", "error"],
        [
            [
                str(a["id"]),
                md_escape(a["kind"]),
                _commands(commands.get(a["id"], [])) or md_escape(a["target"] or ""),
                md_escape(a["status"]),
                "" if a["exit_code"] is None else str(a["exit_code"]),
                str(a["attempts"]),
                _at(a["started_at"]) if a["started_at"] else "",
                _at(a["finished_at"]) if a["finished_at"] else "",
                md_escape(a["error"] or "", 200),
            ]
            for a in rows
        ],
        {4, 5},
    )


def _notifications_table(rows: list[dict[str, Any]]) -> str:
    return md_table(
        ["channel", "event", "status", "tries", "queued", "sent", "error"],
        [
            [
                md_escape(n["channel"]),
                md_escape(n["event"]),
                md_escape(n["status"]),
                str(n["attempts"]),
                _at(n["created_at"]),
                _at(n["sent_at"]) if n["sent_at"] else "",
                md_escape(n["error"] or "", 200),
            ]
            for n in rows
        ],
        {3},
    )
