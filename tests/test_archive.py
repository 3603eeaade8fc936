"""`incident archive`: old resolved incidents go, the report's counts and means stay."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from incident_cli.cli import app
from incident_cli.reporting.archive import archive
from incident_cli.reporting.report import build_report, report_json
from incident_cli.store.connection import open_db
from tests.support import backend
from tests.support.history import DAY, HOUR, NOW, History, cli, env_at, standard_history

pytestmark = pytest.mark.usefixtures("both_backends")

# What archiving keeps exactly (medians, p90s and p95 cannot survive it; see DEFINITIONS).
KEPT = (
    "mttd_seconds",
    "mtta_seconds",
    "mttr_seconds",
    "recovery",
    "escalation_rate",
    "false_positive_rate",
    "by_severity",
    "top_alerts",
)


def old_history(h: History) -> list[int]:
    """Forty days of incidents at odd minutes, with everything that hangs off them."""
    ids = []
    for day in range(40):
        for n, (severity, alert) in enumerate(
            [("critical", "BackendServiceDown"), ("warning", "DiskFilling"), ("info", "Cert")]
        ):
            opened = NOW - (day + 1) * DAY + n * 5 * HOUR + 17 * 60 + day
            started = opened - 30 - 7 * n - day
            i = h.incident(
                opened=opened,
                started=started,
                acked=opened + 120 + day if n != 2 else None,
                resolved=opened + 600 + 60 * n + day,
                resolution="false_positive" if (day + n) % 7 == 0 else "auto",
                severity=severity,
                alertname=alert,
                reopen_count=1 if day % 5 == 0 else 0,
                escalated=opened + 300 if n == 0 and day % 3 == 0 else None,
            )
            h.alert(i, at=started)
            h.event(i, opened, "opened", "opened")
            if n == 1 and day % 4 == 0:
                h.event(i, opened + 50, "escalated", "escalated")
            if n == 2 and day % 6 == 0:
                h.event(i, opened + 60, "flapping_started", "flapping")
            h.action(i, at=opened + 10, status="succeeded" if day % 2 else "failed")
            if day % 9 == 0:
                h.action(i, at=opened + 10, status="refused", exit_code=None)
            h.notification(i, created=opened, latency=1 + n)
            if day % 8 == 0:
                h.notification(i, created=opened, channel="email", status="dead")
            ids.append(i)
        h.notification(None, created=NOW - (day + 1) * DAY + 3 * HOUR, event="storm", latency=3)
    return ids


def kept(report: dict[str, Any]) -> dict[str, Any]:
    out = {k: report[k] for k in KEPT}
    out["incidents"] = {k: v for k, v in report["incidents"].items() if k != "archived"}
    out["notifications"] = {
        k: v for k, v in report["notifications"].items() if k != "p95_latency_seconds"
    }
    out["series"] = report["series"]
    return out


@pytest.fixture
def history(tmp_path: Path) -> History:
    h = History.at(tmp_path / "state.db")
    old_history(h)
    return h


def test_the_report_over_an_archived_window_keeps_its_counts_and_means(
    history: History, tmp_path: Path
) -> None:
    # Incidents open at 17 past; archived ones count from the hour's start (see the edge test
    # below), so windows whose edges fall at half past give exactly the same numbers.
    half_past = HOUR / 2
    windows = [
        (NOW, 1000.0),
        (NOW, 24 * 45),
        (NOW - 20 * DAY + half_past, 72.0),
        (NOW - 30 * DAY + half_past, 5.0),
    ]
    before = [report_json(build_report(history.db, now, hours)) for now, hours in windows]
    result = cli(tmp_path, "archive", "--older-than", "10", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["incidents"] == 30 * 3  # the incidents of days 10..39 back
    after = [report_json(build_report(history.db, now, hours)) for now, hours in windows]
    for b, a in zip(before, after, strict=True):
        assert a["incidents"]["archived"] > 0
        assert kept(a) == kept(b)
    assert after[0]["incidents"]["archived"] == summary["incidents"]
    assert after[0]["incidents"]["opened"] == 120


def test_archived_rows_go_with_their_incidents(history: History, tmp_path: Path) -> None:
    db = history.db
    (cutoff_ids,) = db.conn.execute(
        "SELECT count(*) FROM incidents WHERE resolved_at < ?", (NOW - 10 * DAY,)
    ).fetchone()
    result = cli(tmp_path, "archive", "--older-than", "10", "--json")
    summary = json.loads(result.stdout)
    assert summary["incidents"] == cutoff_ids
    assert summary["alerts"] == cutoff_ids
    assert summary["storm_notifications"] == 30  # storm summaries older than ten days
    for table in ("alerts", "timeline", "actions", "notifications"):
        (orphans,) = db.conn.execute(
            f"SELECT count(*) FROM {table} t LEFT JOIN incidents i ON i.id = t.incident_id"
            " WHERE t.incident_id IS NOT NULL AND i.id IS NULL"
        ).fetchone()
        assert orphans == 0, table
    (left,) = db.conn.execute(
        "SELECT count(*) FROM incidents WHERE resolved_at < ?", (NOW - 10 * DAY,)
    ).fetchone()
    assert left == 0
    (recent,) = db.conn.execute("SELECT count(*) FROM incidents").fetchone()
    assert recent == 120 - cutoff_ids


def test_incidents_with_work_still_queued_wait(tmp_path: Path) -> None:
    h = History.at(tmp_path / "state.db")
    done = h.incident(opened=NOW - 40 * DAY, started=NOW - 40 * DAY, resolved=NOW - 39 * DAY)
    pending_note = h.incident(opened=NOW - 40 * DAY, resolved=NOW - 39 * DAY)
    h.notification(pending_note, created=NOW - 39 * DAY, event="resolved", status="pending")
    running = h.incident(opened=NOW - 40 * DAY, resolved=NOW - 39 * DAY)
    h.action(running, at=NOW - 39 * DAY, status="running")
    still_open = h.incident(opened=NOW - 40 * DAY, started=NOW - 40 * DAY)
    summary = json.loads(cli(tmp_path, "archive", "--older-than", "30", "--json").stdout)
    assert summary["incidents"] == 1
    assert summary["waiting"] == 2
    ids = {row[0] for row in h.db.conn.execute("SELECT id FROM incidents")}
    assert ids == {pending_note, running, still_open}
    assert done not in ids


def test_dry_run_counts_and_changes_nothing(history: History, tmp_path: Path) -> None:
    before = report_json(build_report(history.db, NOW, 1000))
    result = cli(tmp_path, "archive", "--older-than", "10", "--dry-run")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("archive: would archive 90 incident(s)")
    assert report_json(build_report(history.db, NOW, 1000)) == before
    (rollup,) = history.db.conn.execute("SELECT count(*) FROM rollup_hourly").fetchone()
    assert rollup == 0
    dry = json.loads(cli(tmp_path, "archive", "--older-than", "10", "--dry-run", "--json").stdout)
    real = json.loads(cli(tmp_path, "archive", "--older-than", "10", "--json").stdout)
    for key in ("incidents", "alerts", "timeline", "actions", "notifications"):
        assert dry[key] == real[key], key


def test_archiving_twice_counts_nothing_twice(history: History, tmp_path: Path) -> None:
    cli(tmp_path, "archive", "--older-than", "10")
    once = report_json(build_report(history.db, NOW, 1000))
    second = json.loads(cli(tmp_path, "archive", "--older-than", "10", "--json").stdout)
    assert second["incidents"] == 0
    assert report_json(build_report(history.db, NOW, 1000)) == once


def test_small_batches_fold_into_the_same_rollup(tmp_path: Path) -> None:
    rollups = []
    for batch, name in ((2, "small"), (10_000, "large")):
        path = tmp_path / name / "state.db"
        path.parent.mkdir()
        old_history(History.at(path))
        db = open_db(path)
        result = archive(db, NOW, 10, batch=batch)
        assert result.incidents == 90
        rollups.append(db.conn.execute("SELECT * FROM rollup_hourly ORDER BY 1, 2, 3").fetchall())
    assert rollups[0] == rollups[1]


def test_an_archived_incident_counts_from_the_start_of_its_hour(tmp_path: Path) -> None:
    h = History.at(tmp_path / "state.db")
    opened = NOW - 40 * DAY + 30 * 60  # half past the hour
    h.incident(opened=opened, started=opened, resolved=opened + 60)
    window_from_quarter_past = NOW - 40 * DAY + 15 * 60
    hours = (NOW - window_from_quarter_past) / HOUR
    assert build_report(h.db, NOW, hours).opened == 1
    archive(h.db, NOW, 30)
    assert build_report(h.db, NOW, hours).opened == 0  # the documented edge
    assert build_report(h.db, NOW, hours + 0.25).opened == 1


def test_vacuum_only_when_asked(history: History, tmp_path: Path) -> None:
    cli(tmp_path, "archive", "--older-than", "20")
    if backend.on_postgres(tmp_path):
        pytest.skip("SQLite's free pages; PostgreSQL's VACUUM is its own")
    (free,) = history.db.conn.execute("PRAGMA freelist_count").fetchone()
    assert free > 0
    result = cli(tmp_path, "archive", "--older-than", "10", "--vacuum", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["vacuumed"] is True
    assert summary["size_after_bytes"] < summary["size_before_bytes"]
    (free,) = history.db.conn.execute("PRAGMA freelist_count").fetchone()
    assert free == 0


def test_it_is_silent_on_success_unless_verbose(history: History, tmp_path: Path) -> None:
    result = cli(tmp_path, "archive", "--older-than", "10")
    assert result.exit_code == 0
    assert result.stdout == ""
    heartbeat = history.db.conn.execute(
        "SELECT last_exit FROM heartbeats WHERE command = 'archive'"
    ).fetchone()
    assert heartbeat == (0,)


@pytest.mark.parametrize("days", ["0", "-3", "nan"])
def test_a_non_positive_window_is_a_usage_error(tmp_path: Path, days: str) -> None:
    History.at(tmp_path / "state.db")
    result = cli(tmp_path, "archive", "--older-than", days)
    assert result.exit_code == 2, result.output
    assert "--older-than takes a positive number of days" in result.stderr


@pytest.mark.parametrize("days", ["1", "2"])
def test_a_window_not_longer_than_reopen_within_is_refused(tmp_path: Path, days: str) -> None:
    history = History.at(tmp_path / "state.db")
    standard_history(history)
    before = history.db.conn.execute("SELECT count(*) FROM incidents").fetchone()
    config = tmp_path / "incident.yaml"
    config.write_text("sources: {}\nincidents: {reopen_within: 2d}\n")
    argv = ["--config", str(config), "--db", str(tmp_path / "state.db"), "archive"]
    result = CliRunner().invoke(app, [*argv, "--older-than", days], obj=env_at())
    assert result.exit_code == 2, result.output
    assert "--older-than must be longer than incidents.reopen_within (2d)" in result.stderr
    assert history.db.conn.execute("SELECT count(*) FROM incidents").fetchone() == before
    assert history.db.conn.execute("SELECT count(*) FROM heartbeats").fetchone() == (0,)

    accepted = CliRunner().invoke(app, [*argv, "--older-than", "2.01"], obj=env_at())
    assert accepted.exit_code == 0, accepted.output


def test_older_than_is_required(tmp_path: Path) -> None:
    result = cli(tmp_path, "archive")
    assert result.exit_code == 2
    assert "Missing option '--older-than'" in result.stderr


def test_the_migration_creates_the_rollup_table() -> None:
    db = open_db(":memory:")
    columns = {c.name for c in db["rollup_hourly"].columns}
    assert {"hour", "severity", "alertname", "opened", "mttr_sum", "mttr_count"} <= columns
    assert db["rollup_hourly"].pks == ["hour", "severity", "alertname"]


def test_a_dry_run_leaves_no_heartbeat_and_takes_no_lock(history: History, tmp_path: Path) -> None:
    from incident_cli.store.connection import TickLock

    with TickLock(tmp_path / "state.db"):  # a tick is running right now
        result = cli(tmp_path, "archive", "--older-than", "10", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["incidents"] == 90
    heartbeats = history.db.conn.execute("SELECT command FROM heartbeats").fetchall()
    assert heartbeats == []


def test_archive_prunes_old_journey_results_but_keeps_what_the_checks_need(tmp_path: Path) -> None:
    from incident_cli.reporting.archive import archive as archive_incidents
    from incident_cli.store.connection import open_db
    from incident_cli.store.database import write_tx

    db = open_db(backend.locate(tmp_path / "state.db"))
    now = 1_800_000_000.0
    day = 86400.0
    with write_tx(db):
        for journey in ("login", "search"):
            for i in range(40):  # one a day for 40 days
                db.conn.execute(
                    "INSERT INTO journeys (journey, at, ok, latency_ms, origin) VALUES (?, ?, 1, 100, 'cli')",
                    (
                        journey,
                        now - i * day,
                    ),
                )
        db.conn.execute(
            "INSERT INTO journeys (journey, at, ok, latency_ms, origin) VALUES ('rare', ?, 0, 5, 'cli')",
            (now - 100 * day,),
        )
    dry = archive_incidents(db, now, 30, dry_run=True, keep_journeys=24)
    assert dry.journeys == 2 * 9  # days 31..39 of each busy journey; 'rare' is its newest result
    done = archive_incidents(db, now, 30, keep_journeys=24)
    assert done.journeys == 18
    left = dict(
        db.conn.execute("SELECT journey, count(*) FROM journeys GROUP BY journey").fetchall()
    )
    assert left == {"login": 31, "search": 31, "rare": 1}


def test_ids_of_archived_incidents_are_never_given_again(tmp_path: Path) -> None:
    from incident_cli.config.load import load_config
    from incident_cli.intake.sources import fingerprint
    from incident_cli.lifecycle.poll import apply_poll
    from incident_cli.models import Alert
    from incident_cli.reporting.archive import archive as archive_incidents
    from incident_cli.store.connection import open_db

    path = tmp_path / "incident.yaml"
    path.write_text(
        "sources:\n  p: {type: prometheus, url: 'http://127.0.0.1:9'}\nincidents: {resolve_after: 1s, reopen_within: 1s}\n"
    )
    config = load_config(path, {})
    db = open_db(backend.locate(tmp_path / "state.db"))
    t0 = 1_800_000_000.0

    def firing(name: str) -> Alert:
        return Alert("p", fingerprint({"alertname": name}), {"alertname": name}, {}, "firing")

    assert apply_poll(db, config, {"p": [firing("A"), firing("B")]}, {}, t0).opened == [1, 2]
    apply_poll(db, config, {"p": []}, {}, t0 + 10)
    apply_poll(db, config, {"p": []}, {}, t0 + 20)
    assert archive_incidents(db, t0 + 40 * 86400, 30).incidents == 2
    one = apply_poll(db, config, {"p": [firing("C")]}, {}, t0 + 40 * 86400).opened
    storm = apply_poll(
        db,
        config,
        {"p": [firing("C")] + [firing(f"S{i}") for i in range(3)]},
        {},
        t0 + 40 * 86400 + 60,
    ).opened
    assert one == [3] and storm == [4, 5, 6]


def test_an_incident_whose_alerts_still_fire_is_not_archived(tmp_path: Path) -> None:
    from incident_cli.config.load import load_config
    from incident_cli.intake.sources import fingerprint
    from incident_cli.lifecycle.manual import resolve_by_hand
    from incident_cli.lifecycle.poll import apply_poll
    from incident_cli.models import Alert
    from incident_cli.reporting.archive import archive as archive_incidents
    from incident_cli.store.connection import open_db

    path = tmp_path / "incident.yaml"
    path.write_text("sources:\n  p: {type: prometheus, url: 'http://127.0.0.1:9'}\n")
    config = load_config(path, {})
    db = open_db(backend.locate(tmp_path / "state.db"))
    t0 = 1_800_000_000.0
    still = Alert("p", fingerprint({"alertname": "Still"}), {"alertname": "Still"}, {}, "firing")
    (incident_id,) = apply_poll(db, config, {"p": [still]}, {}, t0).opened
    resolve_by_hand(db, config, incident_id, "alice", None, True, t0 + 60)
    later = t0 + 40 * 86400
    apply_poll(db, config, {"p": [still]}, {}, later)  # still firing, held
    assert archive_incidents(db, later, 30).incidents == 0
    assert apply_poll(db, config, {"p": [still]}, {}, later + 60).opened == []


def test_the_rollup_columns_are_the_rollup_tables_columns() -> None:
    from incident_cli.store.connection import open_db
    from incident_cli.store.rollups import ROLLUP_COLUMNS

    db = open_db(":memory:")
    columns = [row[1] for row in db.conn.execute("PRAGMA table_info(rollup_hourly)")]
    assert list(ROLLUP_COLUMNS) == [
        c for c in columns if c not in ("hour", "severity", "alertname")
    ]
