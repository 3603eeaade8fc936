"""`incident report`: the numbers on hand-built histories, JSON/markdown goldens, table, CLI."""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from incident_cli.reporting.report import build_report, report_json
from tests.support import backend
from tests.support.history import DAY, HOUR, NOW, History, cli, sources_config, standard_history

pytestmark = pytest.mark.usefixtures("both_backends")

GOLDEN = Path(__file__).parent / "golden"


def _documented_keys() -> set[str]:
    """The top-level keys of the report JSON as docs/reports.md#report-json's table lists them."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "reports.md").read_text()
    section = text.split("## Report JSON", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([a-z_0-9]+)`", section, flags=re.M))


DOCUMENTED_KEYS = _documented_keys()


@pytest.fixture
def history(tmp_path: Path) -> History:
    h = History.at(tmp_path / "state.db")
    standard_history(h)
    return h


# --------------------------------------------------------------------------- the numbers


def test_it_counts_only_incidents_opened_inside_the_window(history: History) -> None:
    report = report_json(build_report(history.db, NOW, 24))
    assert report["incidents"] == {
        "opened": 5,
        "resolved": 3,
        "open": 2,
        "reopened": 1,
        "false_positive": 1,
        "escalated": 2,
        "flapping": 1,
        "archived": 0,
    }
    assert report["since"] == "2027-01-14T08:00:00Z"
    assert report["until"] == "2027-01-15T08:00:00Z"


def test_means_medians_and_p90_follow_the_spec_definitions(history: History) -> None:
    report = report_json(build_report(history.db, NOW, 24))
    # MTTD over incidents with a start time: 60, 30, 120 and 7200 (began before the window).
    assert report["mttd_seconds"] == 1852.5
    assert report["mttd_median_seconds"] == 90.0
    assert report["mttd_p90_seconds"] == 5076.0
    # MTTA over the acknowledged ones only: 300 and 600.
    assert report["mtta_seconds"] == 450.0
    assert report["mtta_median_seconds"] == 450.0
    assert report["mtta_p90_seconds"] == 570.0
    # MTTR over resolved ones: 1260, 600, and 60 from opened_at for the one without a start.
    assert report["mttr_seconds"] == 640.0
    assert report["mttr_median_seconds"] == 600.0
    assert report["mttr_p90_seconds"] == 1128.0


def test_recovery_counts_command_actions_that_ran(history: History) -> None:
    report = report_json(build_report(history.db, NOW, 24))
    assert report["recovery"] == {
        "attempted": 2,
        "succeeded": 1,
        "success_rate": 0.5,
        "failed": 1,
        "refused": 1,
        "skipped": 0,
    }


def test_rates_use_their_documented_denominators(history: History) -> None:
    report = report_json(build_report(history.db, NOW, 24))
    assert report["escalation_rate"] == 0.4  # 2 escalated of 5 opened (one only in timeline)
    assert report["false_positive_rate"] == 0.3333  # 1 of 3 resolved


def test_notifications_include_storm_summaries_and_p95_latency(history: History) -> None:
    report = report_json(build_report(history.db, NOW, 24))
    # latencies 2, 4, 1 and the storm's 10: p95 = 4 + 0.85 * (10 - 4)
    assert report["notifications"] == {
        "sent": 4,
        "failed": 1,
        "pending": 1,
        "p95_latency_seconds": 9.1,
    }


def test_severities_most_severe_first_and_top_alerts_by_count(history: History) -> None:
    report = report_json(build_report(history.db, NOW, 24))
    assert list(report["by_severity"].items()) == [
        ("critical", 2),
        ("error", 1),
        ("warning", 1),
        ("info", 1),
    ]
    assert report["top_alerts"] == [
        {"alertname": "BackendServiceDown", "incidents": 2},
        {"alertname": "CertificateExpiring", "incidents": 1},
        {"alertname": "LatencySLOBreach_p95", "incidents": 1},
        {"alertname": "ServiceAvailabilityBreach", "incidents": 1},
    ]


def test_an_incident_that_flapped_is_listed_even_after_it_settled(history: History) -> None:
    report = report_json(build_report(history.db, NOW, 24))
    assert [(f["title"], f["reopen_count"], f["flapping_now"]) for f in report["flapping"]] == [
        ("LatencySLOBreach_p95: backend", 2, False)
    ]


def test_an_empty_window_gives_nulls_not_zeros(tmp_path: Path) -> None:
    h = History.at(tmp_path / "state.db")
    h.incident(opened=NOW - 3 * DAY, started=NOW - 3 * DAY, resolved=NOW - 2 * DAY)
    report = report_json(build_report(h.db, NOW, 24))
    assert report["incidents"]["opened"] == 0
    for key in ("mttd_seconds", "mtta_seconds", "mttr_seconds", "mttr_median_seconds"):
        assert report[key] is None
    assert report["recovery"]["success_rate"] is None
    assert report["escalation_rate"] is None
    assert report["false_positive_rate"] is None
    assert report["notifications"]["p95_latency_seconds"] is None
    assert report["by_severity"] == {}
    assert report["top_alerts"] == []


def test_only_open_incidents_leave_mttr_null_but_count_as_open(tmp_path: Path) -> None:
    h = History.at(tmp_path / "state.db")
    h.incident(opened=NOW - HOUR, started=NOW - HOUR - 10)
    h.incident(opened=NOW - 2 * HOUR, started=NOW - 2 * HOUR - 20, acked=NOW - HOUR)
    report = report_json(build_report(h.db, NOW, 24))
    assert report["incidents"]["open"] == 2
    assert report["incidents"]["resolved"] == 0
    assert report["mttr_seconds"] is None
    assert report["false_positive_rate"] is None
    assert report["mttd_seconds"] == 15.0
    assert report["escalation_rate"] == 0.0  # two incidents, none escalated: a real zero


def test_percentiles_match_the_statistics_module(tmp_path: Path) -> None:
    h = History.at(tmp_path / "state.db")
    durations = [(i * 7919) % 1000 + 0.25 * i for i in range(1, 38)]
    for i, d in enumerate(durations):
        opened = NOW - HOUR - i
        h.incident(opened=opened, started=opened - 1, resolved=opened - 1 + d)
    report = build_report(h.db, NOW, 24)
    assert report.mttr.median == pytest.approx(statistics.median(durations))
    deciles = statistics.quantiles(durations, n=10, method="inclusive")
    assert report.mttr.p90 == pytest.approx(deciles[8])
    assert report.mttr.mean == pytest.approx(statistics.fmean(durations))


def test_p95_latency_matches_the_statistics_module(tmp_path: Path) -> None:
    h = History.at(tmp_path / "state.db")
    i = h.incident(opened=NOW - HOUR, started=NOW - HOUR)
    latencies = [((k * 37) % 101) / 7 for k in range(1, 58)]
    for latency in latencies:
        h.notification(i, created=NOW - HOUR, latency=latency)
    expected = statistics.quantiles(latencies, n=20, method="inclusive")[18]
    assert build_report(h.db, NOW, 24).notification_p95 == pytest.approx(expected)


def test_negative_detection_times_from_clock_skew_count_as_zero(tmp_path: Path) -> None:
    h = History.at(tmp_path / "state.db")
    h.incident(opened=NOW - HOUR, started=NOW - HOUR + 30)  # source clock ahead of ours
    assert build_report(h.db, NOW, 24).mttd.mean == 0.0


def test_short_windows_chart_hours_and_long_windows_chart_days(history: History) -> None:
    hourly = build_report(history.db, NOW, 24)
    assert hourly.bucket_seconds == HOUR
    assert len(hourly.buckets) == 25  # the partial hours at both ends
    by_start = {b.start: b for b in hourly.buckets}
    assert by_start[NOW - 10 * HOUR].by_severity == {"critical": 1}
    assert by_start[NOW - 10 * HOUR].mttr == 1260.0
    assert by_start[NOW - 23 * HOUR].mttr is None
    daily = build_report(history.db, NOW, 720)
    assert daily.bucket_seconds == DAY
    assert sum(sum(b.by_severity.values()) for b in daily.buckets) == daily.opened == 6


# --------------------------------------------------------------------------- goldens


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"differs from {path}; UPDATE_GOLDEN=1 to regenerate"


def test_json_matches_the_golden_file_and_has_every_spec_key(
    history: History, tmp_path: Path
) -> None:
    result = cli(tmp_path, "report", "24", "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert len(DOCUMENTED_KEYS) >= 15  # the table was found
    assert set(data) >= DOCUMENTED_KEYS
    assert set(data["incidents"]) >= {"opened", "resolved", "open", "reopened", "false_positive"}
    assert set(data["recovery"]) >= {"attempted", "succeeded", "success_rate"}
    assert set(data["notifications"]) >= {"sent", "failed", "pending", "p95_latency_seconds"}
    assert data["definitions"]["mttd"] == "opened_at - started_at"
    _golden("report_24h.json", result.stdout)


def test_markdown_matches_the_golden_file(history: History, tmp_path: Path) -> None:
    result = cli(tmp_path, "report", "--format", "markdown")
    assert result.exit_code == 0, result.output
    _golden("report_24h.md", result.stdout)


# --------------------------------------------------------------------------- table and CLI


def test_the_table_reads_plainly_without_colour_or_a_tty(history: History, tmp_path: Path) -> None:
    result = cli(tmp_path, "report")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "\x1b[" not in out
    assert "Incident report" in out
    for needle in ("MTTD", "MTTA", "MTTR", "30m 52s", "7m 30s", "10m 40s", "50.0% succeeded"):
        assert needle in out
    assert "BackendServiceDown" in out
    assert "1 failed" in out


def test_the_table_shows_a_dash_for_a_mean_over_nothing(tmp_path: Path) -> None:
    History.at(tmp_path / "state.db")
    result = cli(tmp_path, "report", "1")
    assert result.exit_code == 0, result.output
    assert "no incidents opened in this window" in result.stdout
    assert "—" in result.stdout
    assert " 0s" not in result.stdout


def test_output_file_is_written_and_nothing_printed(history: History, tmp_path: Path) -> None:
    target = tmp_path / "out" / "report.md"
    target.parent.mkdir()
    result = cli(tmp_path, "report", "-f", "markdown", "--output", str(target))
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert target.read_text().startswith("# Incident report: last 24h")
    assert [p.name for p in target.parent.iterdir()] == ["report.md"]  # no temp file left


@pytest.mark.parametrize(
    "args",
    [["report", "0"], ["report", "-5"], ["report", "--format", "xml"], ["report", "nan"]],
)
def test_bad_usage_exits_2(tmp_path: Path, args: list[str]) -> None:
    result = cli(tmp_path, *args)
    assert result.exit_code == 2, result.output


def test_json_flag_prints_only_json(history: History, tmp_path: Path) -> None:
    result = cli(tmp_path, "report", "48", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["window_hours"] == 48


def test_fractional_hours_are_kept(history: History, tmp_path: Path) -> None:
    result = cli(tmp_path, "report", "1.5", "--json")
    data = json.loads(result.stdout)
    assert data["window_hours"] == 1.5
    assert data["incidents"]["opened"] == 1


def test_it_runs_as_cron_runs_it(tmp_path: Path) -> None:
    h = History.at(tmp_path / "state.db")
    now = time.time()  # a subprocess reads the real clock
    h.incident(opened=now - 2 * HOUR, started=now - 2 * HOUR - 42, resolved=now - HOUR)
    h.incident(opened=now - 30 * HOUR, started=now - 30 * HOUR)
    config = sources_config(tmp_path)
    db = backend.locate(tmp_path / "state.db")
    argv = [sys.executable, "-m", "incident_cli", "--config", str(config), "--db", db]
    proc = subprocess.run(
        [*argv, "report", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": os.environ.get("PATH", "/usr/bin"), "HOME": str(tmp_path)},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    data = json.loads(proc.stdout)
    assert data["incidents"]["opened"] == 1
    assert data["mttd_seconds"] == 42.0
