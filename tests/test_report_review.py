"""`report --incident ID`: the post-incident review draft in markdown."""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.history import HOUR, NOW, History, cli

GOLDEN = Path(__file__).parent / "golden"
T0 = NOW - 3 * HOUR


def reviewed_incident(h: History) -> int:
    """An outage: restart failed, escalated, acked by alice, second restart fixed it."""
    i = h.incident(
        started=T0 - 47,
        opened=T0,
        acked=T0 + 252,
        acked_by="alice",
        escalated=T0 + 200,
        fixed=T0 + 700,
        resolved=T0 + 760,
        resolution="recovered",
        labels={"service": "backend"},
        annotations={"summary": "Backend is down", "runbook_url": "https://runbooks/x"},
    )
    h.event(i, T0, "opened", "BackendServiceDown fired on prometheus")
    h.event(i, T0, "action_planned", "restart planned")
    h.event(i, T0 + 5, "notified", "slack: firing sent", data={"channel": "slack"})
    h.event(i, T0 + 30, "action_failed", "restart exited 1", data={"exit_code": 1})
    h.event(i, T0 + 200, "escalated", "recovery failed: escalating to pagerduty")
    h.event(i, T0 + 252, "acknowledged", "on it", actor="alice")
    h.event(i, T0 + 690, "action_succeeded", "restart exited 0", data={"exit_code": 0})
    h.event(i, T0 + 760, "resolved", "alerts cleared after recovery")
    h.action(i, at=T0 + 28, status="failed", exit_code=1, error="exit status 1")
    h.action(i, at=T0 + 688, status="succeeded", exit_code=0, attempts=2)
    h.notification(i, created=T0, channel="slack", latency=5)
    h.notification(i, created=T0 + 200, channel="pagerduty", event="escalation", latency=1)
    h.notification(i, created=T0 + 760, channel="email", event="resolved", status="dead")
    return i


def test_the_review_matches_the_golden_file(tmp_path: Path) -> None:
    i = reviewed_incident(History.at(tmp_path / "state.db"))
    result = cli(tmp_path, "report", "--incident", str(i))
    assert result.exit_code == 0, result.output
    path = GOLDEN / "review_incident.md"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(result.stdout)
    assert result.stdout == path.read_text()


def test_the_review_holds_who_acked_what_ran_and_who_was_told(tmp_path: Path) -> None:
    i = reviewed_incident(History.at(tmp_path / "state.db"))
    text = cli(tmp_path, "report", "--incident", str(i)).stdout
    sections = [line for line in text.splitlines() if line.startswith("## ")]
    assert sections == [
        "## Summary",
        "## Impact window",
        "## Detection, acknowledgement and resolution",
        "## Timeline",
        "## Actions",
        "## Notifications",
        "## Root cause",
        "## Contributing factors",
        "## Follow-ups",
    ]
    assert "| Acknowledged by alice | 2027-01-15T05:04:12Z | MTTA 4m 12s |" in text
    assert "| Detected (opened_at) | 2027-01-15T05:00:00Z | MTTD 47s |" in text
    assert "| Resolved (resolved_at) | 2027-01-15T05:12:40Z | MTTR 13m 27s |" in text
    assert "- **Duration:** 13m 27s" in text
    assert "restart exited 1 (exit\\_code 1)" in text
    assert "| 1 | command | `systemctl restart backend.service` | failed | 1 |" in text
    assert "| pagerduty | escalation | sent |" in text
    assert "| email | resolved | dead |" in text
    # Timeline in time order, the ack by the person who did it.
    kinds = [
        line.split(" | ")[1]
        for line in text.split("## Timeline")[1].split("## Actions")[0].splitlines()
        if line.startswith("| 2027")
    ]
    assert kinds[0] == "opened" and kinds[-1] == "resolved"
    assert "| acknowledged | alice | on it |" in text
    assert text.split("## Root cause")[1].strip().startswith("_To be written._")


def test_an_ongoing_incident_says_so(tmp_path: Path) -> None:
    h = History.at(tmp_path / "state.db")
    i = h.incident(opened=NOW - HOUR, started=NOW - HOUR - 60)
    text = cli(tmp_path, "report", "--incident", str(i)).stdout
    assert "- **Ended:** not resolved yet" in text
    assert "ongoing: 1h 1m so far" in text
    assert "_No timeline events._" in text


def test_hostile_label_values_cannot_break_the_tables(tmp_path: Path) -> None:
    h = History.at(tmp_path / "state.db")
    nasty = "a | b\n## injected\n`$(id)` <b>; rm -rf / --help"
    i = h.incident(
        opened=NOW - HOUR,
        started=NOW - HOUR,
        title=nasty,
        labels={"service": nasty, "big": "x" * (1 << 20)},
        annotations={"summary": "ü" * 5000},
    )
    h.event(i, NOW - HOUR, "note", nasty, actor=nasty)
    h.action(i, at=NOW - HOUR, command=("echo", "a|b", "`x`"), status="failed", exit_code=2)
    result = cli(tmp_path, "report", "--incident", str(i))
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert len(text) < 20_000  # a 1 MiB label is cut, not pasted into the ticket
    assert "\n## injected" not in text
    tables = [block.splitlines() for block in text.split("\n\n") if block.startswith("|")]
    assert len(tables) == 4  # summary, milestones, timeline, actions
    for table in tables:  # every row has as many unescaped pipes as its header
        pipes = {line.replace("\\|", "").count("|") for line in table}
        assert len(pipes) == 1, table
    assert "`` echo 'a\\|b' '`x`' ``" in text  # shell-quoted, in a code span that holds `


def test_an_unknown_incident_exits_1(tmp_path: Path) -> None:
    History.at(tmp_path / "state.db")
    result = cli(tmp_path, "report", "--incident", "404")
    assert result.exit_code == 1
    assert "no incident 404" in result.stderr


def test_json_is_not_a_review_format(tmp_path: Path) -> None:
    History.at(tmp_path / "state.db")
    result = cli(tmp_path, "report", "--incident", "1", "--format", "json")
    assert result.exit_code == 2
