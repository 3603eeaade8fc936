"""`incident followup add|list|done`: follow-ups tracked until done, in the timeline, the review,
the report, the metrics, and through `archive`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from incident_cli.reporting.archive import archive
from incident_cli.store.connection import open_db
from tests.support import backend
from tests.support.history import DAY, HOUR, NOW, History, cli

pytestmark = pytest.mark.usefixtures("both_backends")


def _incident(tmp_path: Path, **kwargs: float) -> int:
    h = History.at(tmp_path / "state.db")
    return h.incident(opened=kwargs.pop("opened", NOW - 2 * HOUR), **kwargs)


def test_add_list_done_and_each_change_is_a_timeline_event(tmp_path: Path) -> None:
    incident = _incident(tmp_path, resolved=NOW - HOUR)

    added = cli(
        tmp_path,
        "followup",
        "add",
        str(incident),
        "Rotate the keys",
        "--owner",
        "bob",
        "--due",
        "7d",
        "--by",
        "alice",
    )
    second = cli(tmp_path, "followup", "add", str(incident), "Write the runbook", now=NOW + 60)
    done = cli(
        tmp_path, "followup", "done", "1", "--by", "bob", "--note", "rotated", now=NOW + 3600
    )

    assert (added.exit_code, added.stdout) == (0, f"follow-up 1 added to incident {incident}\n")
    assert second.exit_code == 0 and done.exit_code == 0, done.output
    listed = json.loads(cli(tmp_path, "followup", "list", "--json", now=NOW + 7200).stdout)
    assert [(f["id"], f["status"], f["owner"]) for f in listed] == [
        (1, "done", "bob"),
        (2, "open", None),
    ]
    assert listed[0]["due_at"] == "2027-01-22T08:00:00Z"
    assert (listed[0]["done_by"], listed[0]["note"], listed[0]["created_by"]) == (
        "bob",
        "rotated",
        "alice",
    )
    events = json.loads(cli(tmp_path, "show", str(incident), "--json").stdout)["timeline"]
    assert [(e["kind"], e["actor"]) for e in events][-3:] == [
        ("followup_added", "alice"),
        ("followup_added", events[-2]["actor"]),
        ("followup_done", "bob"),
    ]
    assert "Rotate the keys" in events[-3]["message"] and "rotated" in events[-1]["message"]


def test_open_and_overdue_filters(tmp_path: Path) -> None:
    incident = _incident(tmp_path)
    cli(tmp_path, "followup", "add", str(incident), "late one", "--due", "1h")
    cli(tmp_path, "followup", "add", str(incident), "not due yet", "--due", "7d")
    cli(tmp_path, "followup", "add", str(incident), "finished", "--due", "1h")
    cli(tmp_path, "followup", "done", "3", now=NOW + 60)
    later = NOW + 2 * HOUR

    def ids(*flags: str) -> list[int]:
        result = cli(tmp_path, "followup", "list", *flags, "--json", now=later)
        return [f["id"] for f in json.loads(result.stdout)]

    assert ids() == [1, 2, 3]
    assert ids("--open") == [1, 2]
    assert ids("--overdue") == [1]
    human = cli(tmp_path, "followup", "list", now=later).stdout.splitlines()
    assert "OVERDUE" in human[0] and "late one" in human[0]
    assert " done " in human[2]


def test_bad_input_is_one_line_and_changes_nothing(tmp_path: Path) -> None:
    incident = _incident(tmp_path)
    no_incident = cli(tmp_path, "followup", "add", "99", "text")
    bad_due = cli(tmp_path, "followup", "add", str(incident), "text", "--due", "soon")
    empty = cli(tmp_path, "followup", "add", str(incident), "  ")
    no_followup = cli(tmp_path, "followup", "done", "5")
    cli(tmp_path, "followup", "add", str(incident), "once")
    cli(tmp_path, "followup", "done", "1", "--by", "bob")
    twice = cli(tmp_path, "followup", "done", "1", "--by", "carol")

    assert (no_incident.exit_code, no_incident.stderr) == (1, "incident: no incident 99\n")
    assert bad_due.exit_code == 2 and bad_due.stderr.startswith("incident: --due:")
    assert empty.exit_code == 2
    assert (no_followup.exit_code, no_followup.stderr) == (1, "incident: no follow-up 5\n")
    assert twice.exit_code == 1 and "already done (by bob" in twice.stderr
    rows = open_db(backend.locate(tmp_path / "state.db")).conn.execute(
        "SELECT id, done_by FROM followups"
    )
    assert rows.fetchall() == [(1, "bob")]


def test_the_review_lists_the_incidents_follow_ups(tmp_path: Path) -> None:
    incident = _incident(tmp_path, resolved=NOW - HOUR)
    cli(
        tmp_path,
        "followup",
        "add",
        str(incident),
        "Add an alert on queue depth",
        "--owner",
        "ops",
        "--due",
        "1h",
    )
    cli(tmp_path, "followup", "add", str(incident), "Fix | pipes\x1b[2J", "--due", "3d")
    cli(tmp_path, "followup", "done", "2", "--by", "dev", now=NOW + 60)

    review = cli(tmp_path, "report", "--incident", str(incident), now=NOW + 2 * HOUR).stdout
    section = review.split("## Follow-ups", 1)[1]
    lines = [x for x in section.strip().splitlines() if x.startswith("- [")]
    assert lines[0].startswith("- [ ] Add an alert on queue depth (#1; owner ops; due ")
    assert "**overdue**" in lines[0]
    assert lines[1].startswith("- [x] Fix") and "done 2027-01-15T08:01:00Z by dev" in lines[1]
    assert "Owner — action — due date" not in section
    assert "\x1b" not in section and "Fix \\| pipes" in lines[1]


def test_report_counts_opened_done_and_overdue_in_the_window(tmp_path: Path) -> None:
    incident = _incident(tmp_path, opened=NOW - 3 * DAY, resolved=NOW - 3 * DAY + HOUR)
    # Opened before the window, overdue into it, done inside it.
    cli(tmp_path, "followup", "add", str(incident), "a", "--due", "1d", now=NOW - 3 * DAY)
    cli(tmp_path, "followup", "done", "1", now=NOW - HOUR)
    # Opened inside the window, still open and overdue.
    cli(tmp_path, "followup", "add", str(incident), "b", "--due", "1h", now=NOW - 10 * HOUR)
    # Opened inside the window, not due yet.
    cli(tmp_path, "followup", "add", str(incident), "c", "--due", "7d", now=NOW - 5 * HOUR)
    # Done in time, long before the window.
    cli(tmp_path, "followup", "add", str(incident), "d", "--due", "1d", now=NOW - 3 * DAY)
    cli(tmp_path, "followup", "done", "4", now=NOW - 3 * DAY + 60)

    report = json.loads(cli(tmp_path, "report", "24", "--format", "json").stdout)

    assert report["followups"] == {"opened": 2, "done": 1, "overdue": 2}


def test_metrics_expose_open_and_overdue_follow_ups(tmp_path: Path) -> None:
    incident = _incident(tmp_path)
    cli(tmp_path, "followup", "add", str(incident), "a", "--due", "1h")
    cli(tmp_path, "followup", "add", str(incident), "b", "--due", "7d")
    cli(tmp_path, "followup", "add", str(incident), "c")
    cli(tmp_path, "followup", "add", str(incident), "d", "--due", "1h")
    cli(tmp_path, "followup", "done", "4")

    text = cli(tmp_path, "metrics", now=NOW + 2 * HOUR).stdout

    assert "incident_followups_open 3.0" in text
    assert "incident_followups_overdue 1.0" in text


def test_archive_keeps_incidents_with_live_follow_ups_and_the_counts_of_the_rest(
    tmp_path: Path,
) -> None:
    h = History.at(tmp_path / "state.db")
    old = NOW - 60 * DAY
    with_open = h.incident(opened=old, resolved=old + HOUR)
    done_recently = h.incident(opened=old, resolved=old + HOUR)
    done_long_ago = h.incident(opened=old, resolved=old + HOUR)
    for incident in (with_open, done_recently, done_long_ago):
        cli(tmp_path, "followup", "add", str(incident), "x", now=old + 2 * HOUR)
    cli(tmp_path, "followup", "done", "2", now=NOW - DAY)  # follow-up ids 1, 2, 3
    cli(tmp_path, "followup", "done", "3", now=old + 3 * HOUR)
    window = 24 * 90
    before = json.loads(cli(tmp_path, "report", str(window), "--format", "json").stdout)

    db = open_db(backend.locate(tmp_path / "state.db"))
    result = archive(db, NOW, 30)

    assert result.incidents == 1
    remaining = db.conn.execute("SELECT incident_id FROM followups ORDER BY id").fetchall()
    assert remaining == [(with_open,), (done_recently,)]
    orphans = "SELECT count(*) FROM followups WHERE incident_id NOT IN (SELECT id FROM incidents)"
    assert db.conn.execute(orphans).fetchone() == (0,)
    after = json.loads(cli(tmp_path, "report", str(window), "--format", "json").stdout)
    assert after["followups"] == before["followups"] == {"opened": 3, "done": 2, "overdue": 0}
