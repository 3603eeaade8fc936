"""`incident detect-anomalies` from a journeys file: incidents open, change, resolve, hold."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from incident_cli.cli import app
from incident_cli.cli.context import Env
from tests.support.builders import JOURNEYS_NOW

CONFIG = """
anomaly:
  journeys: journeys.jsonl
  window: 4
  fail_threshold: {threshold}
  p95_factor: 1.5
  consecutive_failures: 3
channels:
  hook: {{type: webhook, url: "http://127.0.0.1:9/hook"}}
  pd:
    type: pagerduty
    routing_key: "pd-key-1234"
    url: "http://127.0.0.1:9/pd"
    min_severity: critical
defaults: {{notify: [hook, pd]}}
{extra}
"""


class Rig:
    """A config and state DB under tmp_path, a journeys file to append to, a fixed clock."""

    def __init__(self, tmp_path: Path, threshold: float = 0.25, extra: str = "") -> None:
        self.dir = tmp_path
        (tmp_path / "incident.yaml").write_text(CONFIG.format(threshold=threshold, extra=extra))
        self.path = tmp_path / "journeys.jsonl"
        self.path.touch()
        self.now = JOURNEYS_NOW
        self.count: dict[str, int] = {}

    def append(self, pattern: str, journey: str = "login", latency: float = 100.0) -> None:
        """'.' a successful run, 'x' a failed one, a minute apart per journey."""
        with self.path.open("a") as f:
            for ch in pattern:
                i = self.count.get(journey, 0)
                self.count[journey] = i + 1
                at = f"2026-11-28T19:{i // 60:02d}:{i % 60:02d}Z"
                f.write(
                    json.dumps(
                        {"journey": journey, "at": at, "ok": ch == ".", "latency_ms": latency},
                        ensure_ascii=False,
                    )
                    + "\n"
                )

    def cli(self, *args: str, environ: dict[str, str] | None = None) -> Result:
        base = ["--config", str(self.dir / "incident.yaml"), "--db", str(self.dir / "state.db")]
        env = Env(clock=lambda: self.now, environ={} if environ is None else environ)
        return CliRunner().invoke(app, [*base, *args], obj=env, catch_exceptions=False)

    def detect(self, *args: str, environ: dict[str, str] | None = None) -> dict[str, Any]:
        result = self.cli("detect-anomalies", "--json", *args, environ=environ)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)  # type: ignore[no-any-return]

    def show(self, incident_id: int) -> dict[str, Any]:
        result = self.cli("show", str(incident_id), "--json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)  # type: ignore[no-any-return]

    def counts(self) -> tuple[int, int]:
        """(timeline events, notifications) over every incident."""
        import sqlite3

        conn = sqlite3.connect(self.dir / "state.db")
        try:
            events = conn.execute("SELECT count(*) FROM timeline").fetchone()[0]
            notes = conn.execute("SELECT count(*) FROM notifications").fetchone()[0]
        finally:
            conn.close()
        return events, notes


def pending(detail: dict[str, Any]) -> list[tuple[str, str]]:
    return [(n["channel"], n["event"]) for n in detail["notifications"]]


def test_a_failing_journey_opens_changes_and_resolves_its_incident(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.append("........")
    rig.append("........", journey="search")
    quiet = rig.cli("detect-anomalies")
    assert (quiet.exit_code, quiet.stdout, quiet.stderr) == (0, "", "")

    # Two failures in the newest window of four: 50% > 25%, a warning.
    rig.append("xx")
    out = rig.detect()
    assert len(out["opened"]) == 1
    incident_id = out["opened"][0]
    login = next(j for j in out["journeys"] if j["journey"] == "login")
    assert (login["action"], login["incident"], login["failure_rate"]) == (
        "opened",
        incident_id,
        0.5,
    )
    search = next(j for j in out["journeys"] if j["journey"] == "search")
    assert (search["action"], search["tripped"]) == ("ok", [])
    detail = rig.show(incident_id)
    assert detail["labels"] == {"alertname": "JourneyAnomaly", "journey": "login"}
    assert (detail["source"], detail["severity"], detail["status"]) == (
        "anomaly",
        "warning",
        "open",
    )
    assert detail["started_at"] == "2026-11-28T19:00:08Z"  # the first failure in the window
    opened = detail["timeline"][0]
    assert opened["kind"] == "opened"
    assert "failure rate 50.0% > 25.0%" in opened["message"]
    assert opened["data"]["checks"] == [
        {
            "check": "failure_rate",
            "journey": "login",
            "failure_rate": 0.5,
            "threshold": 0.25,
            "failures": 2,
            "results": 4,
        }
    ]
    assert pending(detail) == [("hook", "firing")]  # pd takes critical only

    # The same data again changes nothing.
    before = rig.counts()
    again = rig.detect()
    assert (again["opened"], again["changed"], again["resolved"]) == ([], [], [])
    assert again["journeys"][0]["action"] == "firing"
    assert rig.counts() == before

    # A third failure in a row: a note naming both checks, and critical (PagerDuty now hears).
    rig.append("x")
    out = rig.detect()
    assert out["changed"] == [incident_id]
    detail = rig.show(incident_id)
    assert detail["severity"] == "critical"
    note = detail["timeline"][-1]
    assert note["kind"] == "severity_raised"
    assert (note["data"]["from"], note["data"]["to"]) == ("warning", "critical")
    assert "severity raised to critical" in note["message"]
    assert {c["check"]: c for c in note["data"]["checks"]}["consecutive_failures"] == {
        "check": "consecutive_failures",
        "journey": "login",
        "run": 3,
        "threshold": 3,
    }
    assert pending(detail) == [("hook", "firing"), ("pd", "firing")]

    # The run ends: the set of tripped checks changes again; the severity stays the worst.
    rig.append(".")
    out = rig.detect()
    assert out["changed"] == [incident_id]
    detail = rig.show(incident_id)
    assert [c["check"] for c in detail["timeline"][-1]["data"]["checks"]] == ["failure_rate"]
    assert detail["severity"] == "critical"

    # A whole window of four newer than the opening that passes every check resolves it.
    rig.append(".")
    out = rig.detect()  # the window still holds two failures: unchanged
    assert (out["resolved"], out["changed"], out["journeys"][0]["action"]) == ([], [], "firing")
    rig.append(".")
    out = rig.detect()
    assert out["resolved"] == [incident_id]
    detail = rig.show(incident_id)
    assert (detail["status"], detail["resolution"]) == ("resolved", "auto")
    resolved = detail["timeline"][-1]
    assert resolved["kind"] == "resolved"
    assert resolved["data"]["checks"] == []
    assert sorted(pending(detail)) == [
        ("hook", "firing"),
        ("hook", "resolved"),
        ("pd", "firing"),
        ("pd", "resolved"),
    ]
    before = rig.counts()
    assert rig.detect()["journeys"][0]["action"] == "ok"
    assert rig.counts() == before


def test_it_waits_for_a_whole_window_newer_than_the_opening(tmp_path: Path) -> None:
    rig = Rig(tmp_path, threshold=0.8)
    rig.append("....xxx")
    out = rig.detect()
    incident_id = out["opened"][0]
    assert rig.show(incident_id)["severity"] == "critical"
    rig.append(".")  # 3 of 4 failed is under 80%, no run: passes, but the window is old
    out = rig.detect()
    assert (out["resolved"], out["journeys"][0]["action"]) == ([], "recovering")
    assert rig.show(incident_id)["timeline"][-1]["message"].startswith("every check passes")
    before = rig.counts()
    rig.append("..")
    assert rig.detect()["journeys"][0]["action"] == "recovering"
    assert rig.counts() == before  # nothing new to say
    rig.append(".")
    assert rig.detect()["resolved"] == [incident_id]


def test_a_p95_jump_opens_a_warning_with_its_numbers(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.append("....", latency=200)
    rig.append("....", latency=400)
    out = rig.detect()
    detail = rig.show(out["opened"][0])
    assert detail["severity"] == "warning"
    assert detail["timeline"][0]["data"]["checks"] == [
        {
            "check": "p95_latency",
            "journey": "login",
            "p95_ms": 400.0,
            "baseline_p95_ms": 200.0,
            "factor": 1.5,
            "limit_ms": 300.0,
        }
    ]
    assert "p95 latency 400 ms > 1.5 x 200 ms" in detail["timeline"][0]["message"]


def test_dry_run_says_what_it_would_do_and_changes_nothing(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.append("....xxx")
    result = rig.cli("detect-anomalies", "--dry-run")
    assert result.exit_code == 0
    assert "would have: opened 1" in result.stdout
    assert "login" in result.stdout
    listed = rig.cli("list", "--status", "all", "--json")
    assert json.loads(listed.stdout) == []
    import sqlite3

    conn = sqlite3.connect(tmp_path / "state.db")
    assert conn.execute("SELECT count(*) FROM journeys").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM journey_files").fetchone()[0] == 0
    conn.close()
    assert len(rig.detect()["opened"]) == 1  # the real run still sees every line


def test_malformed_lines_are_one_counted_warning_on_stderr(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.append("....")
    with rig.path.open("a") as f:
        f.write("not json\n{}\n")
    result = rig.cli("detect-anomalies")
    assert result.exit_code == 0
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert "skipped 2 malformed line(s)" in lines[0]
    rig.append(".")
    with rig.path.open("a") as f:
        f.write("[]\n")
    out = rig.cli("detect-anomalies", "--json")
    assert out.stderr == ""
    assert json.loads(out.stdout)["file"]["skipped"] == 1


def test_verbose_prints_a_summary_per_journey(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.append("....xx")
    rig.append("..", journey="[bold]search[/]")
    result = rig.cli("--verbose", "detect-anomalies")
    assert result.exit_code == 0
    assert "opened 1" in result.stdout
    assert "login: 4 results, failure rate 50.0%" in result.stdout
    assert "[bold]search[/]: 2 results" in result.stdout  # names are not rich markup
    assert "window not full" in result.stdout


def test_a_journey_resolved_by_hand_is_not_raised_again_on_the_same_results(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.append("....xxx")
    incident_id = rig.detect()["opened"][0]
    assert rig.cli("resolve", str(incident_id), "--by", "ana").exit_code == 0
    rig.now += 60
    out = rig.detect()
    assert (out["opened"], out["reopened"], out["journeys"][0]["action"]) == ([], [], "held")
    # A failure recorded after the human resolved it is new evidence: the incident reopens.
    rig.now += 60
    at = "2026-11-28T21:01:30Z"
    assert (
        rig.cli("journey", "record", "login", "--fail", "--latency-ms", "5", "--at", at).exit_code
        == 0
    )
    out = rig.detect()
    assert out["reopened"] == [incident_id]
    detail = rig.show(incident_id)
    assert detail["reopen_count"] == 1
    assert detail["timeline"][-1]["data"]["checks"][0]["journey"] == "login"


def test_hostile_journey_names_are_kept_as_label_values(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    names = ["; rm -rf /", "$(id)", "--help", "登录 🚀", "x" * 200]
    for name in names:
        rig.append("xxx", journey=name)
    out = rig.detect()
    assert len(out["opened"]) == len(names)
    journeys = {rig.show(i)["labels"]["journey"] for i in out["opened"]}
    assert journeys == set(names)


def test_journeys_grouped_by_a_rule_share_one_incident_without_flapping(tmp_path: Path) -> None:
    extra = """rules:
  - {name: journeys, match: {alertname: JourneyAnomaly}, group_by: [alertname]}
"""
    rig = Rig(tmp_path, extra=extra)
    rig.append("........")
    rig.append("xxx", journey="search")
    out = rig.detect()
    assert len(out["opened"]) == 1
    before = rig.counts()
    for _ in range(2):
        again = rig.detect()
        assert (again["opened"], again["resolved"], again["reopened"]) == ([], [], [])
    assert rig.counts() == before
    rig.append("....", journey="search")
    assert rig.detect()["resolved"] == out["opened"]


def test_it_records_its_heartbeat_and_exits_1_when_the_file_cannot_be_read(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.path.unlink()
    rig.path.mkdir()
    result = rig.cli("detect-anomalies")
    assert result.exit_code == 1
    assert "cannot read the journeys file" in result.stderr
    import sqlite3

    conn = sqlite3.connect(tmp_path / "state.db")
    beat = conn.execute(
        "SELECT last_exit, last_ok_at FROM heartbeats WHERE command = 'detect-anomalies'"
    ).fetchone()
    conn.close()
    assert beat == (1, None)


def test_cron_runs_it_as_a_subprocess(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.append("....xxx")
    env = {**os.environ, "HOME": str(tmp_path)}
    cmd = [sys.executable, "-m", "incident_cli", "--config", str(tmp_path / "incident.yaml")]
    done = subprocess.run(
        [*cmd, "detect-anomalies"], capture_output=True, text=True, env=env, timeout=60
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    listed = subprocess.run(
        [*cmd, "list", "--json"], capture_output=True, text=True, env=env, timeout=60
    )
    incidents = json.loads(listed.stdout)
    assert [(i["source"], i["severity"]) for i in incidents] == [("anomaly", "critical")]


def test_a_fifo_as_the_journeys_file_is_reported_not_waited_on(tmp_path: Path) -> None:
    # No writer: opening a FIFO for reading would block until one came, with the tick lock held.
    rig = Rig(tmp_path)
    rig.path.unlink()
    os.mkfifo(rig.path)
    env = {**os.environ, "HOME": str(tmp_path)}
    cmd = [sys.executable, "-m", "incident_cli", "--config", str(tmp_path / "incident.yaml")]
    done = subprocess.run(
        [*cmd, "detect-anomalies", "--json"], capture_output=True, text=True, env=env, timeout=30
    )
    assert done.returncode == 1, done.stderr
    out = json.loads(done.stdout)
    assert "not a regular file" in out["file_error"]
    assert out["file"] is None
    assert "cannot read the journeys file" in done.stderr
    assert "not a regular file" in done.stderr


@pytest.mark.parametrize(
    ("extra", "environ"),
    [
        ("incidents: {auto_resolve: false}", {}),
        ("", {"INCIDENT_AUTO_RESOLUTION_ENABLED": "false"}),
    ],
)
def test_with_auto_resolve_off_a_passing_journey_stays_open_and_says_so(
    tmp_path: Path, extra: str, environ: dict[str, str]
) -> None:
    rig = Rig(tmp_path, threshold=0.8, extra=extra)
    rig.append("....xxx")
    incident_id = rig.detect(environ=environ)["opened"][0]
    rig.append(".")  # every check passes again
    out = rig.detect(environ=environ)
    assert (out["resolved"], out["journeys"][0]["action"]) == ([], "kept_open")
    note = rig.show(incident_id)["timeline"][-1]
    assert note["kind"] == "note"
    assert "auto-resolve is off" in note["message"]
    rig.append("...")  # a whole window newer than the opening passes: it would resolve now
    out = rig.detect(environ=environ)
    assert (out["resolved"], out["journeys"][0]["action"]) == ([], "kept_open")
    detail = rig.show(incident_id)
    assert (detail["status"], detail["resolved_at"], detail["resolution"]) == ("open", None, None)
    assert ("hook", "resolved") not in pending(detail)
    before = rig.counts()
    verbose = rig.cli("-v", "detect-anomalies", environ=environ)
    assert verbose.exit_code == 0
    said = " ".join(verbose.stdout.split())  # rich wraps long lines
    assert "resolved incident" not in said
    assert f"auto-resolve is off: resolve incident {incident_id} by hand" in said
    assert rig.counts() == before  # saying so once is enough
    # Resolved by hand it stays resolved; a new problem opens a new incident as usual.
    assert rig.cli("resolve", str(incident_id), environ=environ).exit_code == 0
    assert rig.detect(environ=environ)["journeys"][0]["action"] == "ok"
