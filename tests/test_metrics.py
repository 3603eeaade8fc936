"""`incident metrics`: the exposition, read back with prometheus_client's own parser."""

from __future__ import annotations

import itertools
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlite_utils import Database

from incident_cli.config.model import Config
from incident_cli.reporting.metrics import exposition, write_file_atomically
from incident_cli.store.connection import open_db
from incident_cli.store.database import write_tx
from tests.support import backend
from tests.support.history import DAY, HOUR, NOW, History, cli, sources_config, standard_history

pytestmark = pytest.mark.usefixtures("both_backends")

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


@pytest.fixture
def textfile(tmp_path: Path) -> Path:
    h = History.at(tmp_path / "state.db")
    standard_history(h)
    h.heartbeat("run", ran=NOW - 60)
    h.heartbeat("notify", ran=NOW - 30, ok=NOW - 600, exit_code=1)
    h.source("prom", checked=NOW - 60)
    h.source("am", checked=NOW - 60, failures=4, error="connection refused")
    target = tmp_path / "collector" / "incident.prom"
    target.parent.mkdir()
    result = cli(tmp_path, "metrics", "--textfile", str(target))
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    return target


def test_open_incidents_by_severity_and_status(textfile: Path) -> None:
    s = parse(textfile.read_text())
    assert value(s, "incident_open_incidents", severity="critical", status="acknowledged") == 1
    assert value(s, "incident_open_incidents", severity="error", status="open") == 1
    assert value(s, "incident_open_incidents", severity="info", status="open") == 0


def test_opened_and_resolved_totals_are_counters(textfile: Path) -> None:
    s = parse(textfile.read_text())
    # every incident in the DB: the five of the last day and one older (critical, resolved)
    assert value(s, "incident_incidents_opened_total", severity="critical") == 3
    assert value(s, "incident_incidents_resolved_total", severity="critical") == 2
    assert value(s, "incident_incidents_opened_total", severity="warning") == 1
    families = {f.name: f.type for f in text_string_to_metric_families(textfile.read_text())}
    assert families["incident_incidents_opened"] == "counter"
    assert families["incident_recovery_actions"] == "counter"


def test_mttr_over_the_last_24_hours(textfile: Path) -> None:
    s = parse(textfile.read_text())
    assert value(s, "incident_mttr_seconds", window="24h") == 640.0
    assert value(s, "incident_mttd_seconds", window="24h") == 1852.5
    assert value(s, "incident_mtta_seconds", window="24h") == 450.0


def test_recovery_attempts_by_result(textfile: Path) -> None:
    s = parse(textfile.read_text())
    assert value(s, "incident_recovery_actions_total", result="succeeded") == 2
    assert value(s, "incident_recovery_actions_total", result="failed") == 1
    assert value(s, "incident_recovery_actions_total", result="refused") == 1
    assert value(s, "incident_recovery_actions_total", result="skipped") == 0


def test_notifications_by_channel_and_status_and_outbox_depth(textfile: Path) -> None:
    s = parse(textfile.read_text())
    assert value(s, "incident_notifications", channel="slack", status="sent") == 5
    assert value(s, "incident_notifications", channel="slack", status="dead") == 1
    assert value(s, "incident_notifications", channel="pagerduty", status="pending") == 1
    assert value(s, "incident_outbox_depth") == 1
    assert value(s, "incident_outbox_oldest_pending_age_seconds") == 2 * HOUR


def test_last_run_and_last_success_per_command(textfile: Path) -> None:
    s = parse(textfile.read_text())
    assert value(s, "incident_last_success_timestamp_seconds", command="run") == NOW - 60
    assert value(s, "incident_last_success_timestamp_seconds", command="notify") == NOW - 600
    assert value(s, "incident_last_run_timestamp_seconds", command="notify") == NOW - 30
    assert value(s, "incident_last_exit_code", command="notify") == 1
    # the textfile write itself leaves a heartbeat (recorded after this file was written)
    assert ("incident_last_run_timestamp_seconds", (("command", "metrics"),)) not in s


def test_sources_up_and_failures(textfile: Path) -> None:
    s = parse(textfile.read_text())
    assert value(s, "incident_source_up", source="prom") == 1
    assert value(s, "incident_source_up", source="am") == 0
    assert value(s, "incident_source_consecutive_failures", source="am") == 4
    assert value(s, "incident_db_size_bytes") > 0
    assert value(s, "incident_metrics_generated_timestamp_seconds") == NOW


def test_the_textfile_is_readable_by_node_exporter_and_leaves_no_temp_file(
    textfile: Path,
) -> None:
    assert stat.S_IMODE(textfile.stat().st_mode) == 0o644
    assert os.listdir(textfile.parent) == ["incident.prom"]


def test_a_textfile_run_records_a_metrics_heartbeat(textfile: Path, tmp_path: Path) -> None:
    result = cli(tmp_path, "metrics")
    s = parse(result.stdout)
    assert value(s, "incident_last_success_timestamp_seconds", command="metrics") == NOW


def test_stdout_without_textfile(tmp_path: Path) -> None:
    History.at(tmp_path / "state.db")
    result = cli(tmp_path, "metrics")
    assert result.exit_code == 0
    s = parse(result.stdout)
    assert value(s, "incident_outbox_depth") == 0
    # nothing to measure: no MTTR sample rather than a misleading 0
    assert not [k for k in s if k[0] == "incident_mttr_seconds"]
    assert value(s, "incident_incidents_opened_total", severity="critical") == 0


def test_a_replaced_textfile_is_never_half_written(tmp_path: Path) -> None:
    target = tmp_path / "x.prom"
    target.write_text("old\n")
    inode = target.stat().st_ino
    write_file_atomically(target, b"new\n")
    assert target.read_text() == "new\n"
    assert target.stat().st_ino != inode  # renamed over, not rewritten in place


def test_a_failed_write_leaves_the_old_file_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "x.prom"
    target.write_text("old\n")

    def boom(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError):
        write_file_atomically(target, b"new\n")
    assert target.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["x.prom"]


def test_counters_keep_archived_incidents(tmp_path: Path) -> None:
    h = History.at(tmp_path / "state.db")
    for i in range(3):
        h.incident(opened=NOW - 40 * DAY + i, started=NOW - 40 * DAY, resolved=NOW - 39 * DAY)
    before = parse(cli(tmp_path, "metrics").stdout)
    assert cli(tmp_path, "archive", "--older-than", "30").exit_code == 0
    after = parse(cli(tmp_path, "metrics").stdout)
    for name in ("incident_incidents_opened_total", "incident_incidents_resolved_total"):
        assert value(after, name, severity="critical") == value(before, name, severity="critical")
        assert value(after, name, severity="critical") == 3


def _lifecycle_config(tmp_path: Path) -> Config:
    from incident_cli.config.load import load_config

    return load_config(sources_config(tmp_path), {})


def _raise(db: Database, config: Config, alertname: str, severity: str, at: float) -> int:
    from incident_cli.lifecycle.detectors import raise_external

    with write_tx(db):
        incident, _ = raise_external(
            db,
            config,
            labels={"alertname": alertname},
            annotations={},
            source="test",
            severity=severity,
            now=at,
            started_at=at,
            message="tripped",
        )
    return incident.id


def _clear(db: Database, config: Config, incident_id: int, at: float) -> None:
    from incident_cli.lifecycle.detectors import clear_external
    from incident_cli.store.incidents import get_incident

    with write_tx(db):
        incident = get_incident(db, incident_id)
        assert incident is not None
        clear_external(db, config, incident, at, "cleared")


def _totals(db: Database, now: float = NOW) -> dict[tuple[str, str], float]:
    samples = parse(exposition(db, now).decode())
    return {
        (name, labels[0][1]): v
        for (name, labels), v in samples.items()
        if name.endswith("_total") and name.startswith("incident_incidents_")
    }


def _never_decrease(before: dict[tuple[str, str], float], after: dict[tuple[str, str], float]):
    return {k: (v, after.get(k, 0)) for k, v in before.items() if after.get(k, 0) < v}


def test_resolved_total_does_not_go_down_when_an_incident_reopens(tmp_path: Path) -> None:
    db = open_db(backend.locate(tmp_path / "state.db"))
    config = _lifecycle_config(tmp_path)
    first = _raise(db, config, "BackendServiceDown", "critical", NOW - 3 * HOUR)
    _clear(db, config, first, NOW - 3 * HOUR + 60)
    second = _raise(db, config, "EphemerisServiceDown", "critical", NOW - 2 * HOUR)
    _clear(db, config, second, NOW - 2 * HOUR + 60)
    before = _totals(db)
    assert before[("incident_incidents_resolved_total", "critical")] == 2
    # the same alert again within incidents.reopen_within: that incident reopens
    assert _raise(db, config, "EphemerisServiceDown", "critical", NOW - 2 * HOUR + 120) == second
    after = _totals(db)
    assert _never_decrease(before, after) == {}
    assert after[("incident_incidents_resolved_total", "critical")] == 2
    assert after[("incident_incidents_opened_total", "critical")] == 2
    assert after[("incident_incidents_reopened_total", "critical")] == 1
    _clear(db, config, second, NOW - HOUR)
    assert _totals(db)[("incident_incidents_resolved_total", "critical")] == 3


def test_opened_total_keeps_the_severity_an_incident_opened_with(tmp_path: Path) -> None:
    from incident_cli.lifecycle.detectors import raise_severity
    from incident_cli.store.incidents import get_incident

    db = open_db(backend.locate(tmp_path / "state.db"))
    config = _lifecycle_config(tmp_path)
    anomaly = _raise(db, config, "JourneyAnomaly", "warning", NOW - HOUR)
    before = _totals(db)
    assert before[("incident_incidents_opened_total", "warning")] == 1
    with write_tx(db):
        incident = get_incident(db, anomaly)
        assert incident is not None
        raise_severity(db, config, incident, "critical", NOW - HOUR + 60, "journey down")
    after = _totals(db)
    assert _never_decrease(before, after) == {}
    assert after[("incident_incidents_opened_total", "warning")] == 1
    assert after[("incident_incidents_opened_total", "critical")] == 0


def test_counters_survive_reopen_severity_change_and_archive_together(tmp_path: Path) -> None:
    from incident_cli.reporting.archive import archive

    db = open_db(backend.locate(tmp_path / "state.db"))
    config = _lifecycle_config(tmp_path)
    seen: list[dict[tuple[str, str], float]] = [_totals(db)]
    i = _raise(db, config, "BackendServiceDown", "warning", NOW - 40 * DAY)
    seen.append(_totals(db))
    _clear(db, config, i, NOW - 40 * DAY + 60)
    seen.append(_totals(db))
    _raise(db, config, "BackendServiceDown", "warning", NOW - 40 * DAY + 120)  # reopens
    seen.append(_totals(db))
    _clear(db, config, i, NOW - 40 * DAY + 180)
    seen.append(_totals(db))
    archive(db, NOW, 30)
    assert db.conn.execute("SELECT count(*) FROM incidents").fetchone() == (0,)
    seen.append(_totals(db))
    for before, after in itertools.pairwise(seen):
        assert _never_decrease(before, after) == {}
    assert seen[-1][("incident_incidents_opened_total", "warning")] == 1
    assert seen[-1][("incident_incidents_reopened_total", "warning")] == 1
    assert seen[-1][("incident_incidents_resolved_total", "warning")] == 2


def test_upgrading_starts_the_counters_where_the_old_totals_were(tmp_path: Path) -> None:
    from incident_cli.store.migrations import migrations

    path = tmp_path / "state.db"
    old = open_db(path, migrate=False)
    with write_tx(old):
        migrations.apply(old, stop_before="m007_counters")
    h = History(old)
    h.incident(opened=NOW - 2 * HOUR, resolved=NOW - HOUR, reopen_count=2)
    h.incident(opened=NOW - HOUR, severity="warning")
    with write_tx(old):  # one archived incident, as m005's rollup remembers it
        old.conn.execute(
            "INSERT INTO rollup_hourly (hour, severity, alertname, opened, resolved, reopened)"
            " VALUES (?, 'critical', 'X', 1, 1, 1)",
            (NOW - 40 * DAY,),
        )
    old.conn.close()
    totals = _totals(open_db(path))
    assert totals[("incident_incidents_opened_total", "critical")] == 2
    assert totals[("incident_incidents_resolved_total", "critical")] == 2
    assert totals[("incident_incidents_reopened_total", "critical")] == 3
    assert totals[("incident_incidents_opened_total", "warning")] == 1
    assert totals[("incident_incidents_resolved_total", "warning")] == 0


EXAMPLES = Path(__file__).parent.parent / "examples"


def _exposed_names(tmp_path: Path) -> set[str]:
    h = History.at(tmp_path / "state.db")
    standard_history(h)
    h.heartbeat("run", ran=NOW - 60)
    h.source("prom", checked=NOW - 60)
    names = set()
    for family in text_string_to_metric_families(cli(tmp_path, "metrics").stdout):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    return names


@pytest.mark.parametrize("example", ["prometheus-alerts.yml", "grafana-dashboard.json"])
def test_the_examples_only_use_metrics_that_exist(tmp_path: Path, example: str) -> None:
    import re

    text = (EXAMPLES / example).read_text()
    used = set(re.findall(r"\bincident_[a-z0-9_]+", text))
    assert used, example
    assert used <= _exposed_names(tmp_path), used - _exposed_names(tmp_path)


def test_the_dashboard_is_valid_json_with_panels() -> None:
    import json

    dashboard = json.loads((EXAMPLES / "grafana-dashboard.json").read_text())
    titles = [p["title"] for p in dashboard["panels"] if p["type"] != "row"]
    assert "Open incidents by severity" in titles
    assert all(t.get("expr") for p in dashboard["panels"] for t in p.get("targets", []))


PROMTOOL = shutil.which("promtool")


@pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian package prometheus) not installed")
def test_the_self_monitoring_alerts_fire_when_incident_stops(tmp_path: Path) -> None:
    import yaml

    rules = yaml.safe_load((EXAMPLES / "prometheus-alerts.yml").read_text())
    for group in rules["groups"]:  # compare labels only; annotations are prose
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules))
    crit = {"severity": "critical", "instance": "h"}
    spec = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [
            {  # `run` ran once at t=0 and never again; metrics keep being written
                "interval": "1m",
                "input_series": [
                    {
                        "series": 'incident_last_run_timestamp_seconds{command="run",instance="h"}',
                        "values": "0x30",
                    },
                    {
                        "series": 'incident_metrics_generated_timestamp_seconds{instance="h"}',
                        "values": "0+60x30",
                    },
                    {
                        "series": 'incident_last_exit_code{command="run",instance="h"}',
                        "values": "75x30",
                    },
                    {
                        "series": 'incident_source_consecutive_failures{source="am",instance="h"}',
                        "values": "0 1 2 3 4 5 6 7 8 9",
                    },
                ],
                "alert_rule_test": [
                    {"eval_time": "5m", "alertname": "IncidentTickNotRunning", "exp_alerts": []},
                    {
                        "eval_time": "15m",
                        "alertname": "IncidentTickNotRunning",
                        "exp_alerts": [{"exp_labels": crit}],
                    },
                    {"eval_time": "15m", "alertname": "IncidentMetricsStale", "exp_alerts": []},
                    # its exit code stays in the metrics, but a tick that stopped is not failing
                    {"eval_time": "25m", "alertname": "IncidentTickFailing", "exp_alerts": []},
                    {
                        "eval_time": "6m",
                        "alertname": "IncidentSourceUnreachable",
                        "exp_alerts": [{"exp_labels": {**crit, "source": "am"}}],
                    },
                ],
            },
            {  # cron runs `run` every minute; from t=2m every tick exits 75
                "interval": "1m",
                "input_series": [
                    {
                        "series": 'incident_last_run_timestamp_seconds{command="run",instance="h"}',
                        "values": "0+60x30",
                    },
                    {
                        "series": 'incident_last_exit_code{command="run",instance="h"}',
                        "values": "0 0 75x28",
                    },
                ],
                "alert_rule_test": [
                    {"eval_time": "15m", "alertname": "IncidentTickNotRunning", "exp_alerts": []},
                    {"eval_time": "10m", "alertname": "IncidentTickFailing", "exp_alerts": []},
                    {
                        "eval_time": "20m",
                        "alertname": "IncidentTickFailing",
                        "exp_alerts": [
                            {"exp_labels": {**crit, "severity": "warning", "command": "run"}}
                        ],
                    },
                ],
            },
            {  # cron runs the stages separately; `run` was started by hand once and failed
                "interval": "1m",
                "input_series": [
                    {
                        "series": 'incident_last_run_timestamp_seconds{command="run",instance="h"}',
                        "values": "0x60",
                    },
                    {
                        "series": 'incident_last_exit_code{command="run",instance="h"}',
                        "values": "75x60",
                    },
                    {
                        "series": 'incident_last_run_timestamp_seconds{command="poll",instance="h"}',
                        "values": "0+60x60",
                    },
                    {
                        "series": 'incident_last_exit_code{command="poll",instance="h"}',
                        "values": "0x60",
                    },
                    {
                        "series": 'incident_metrics_generated_timestamp_seconds{instance="h"}',
                        "values": "0+60x60",
                    },
                ],
                "alert_rule_test": [
                    {"eval_time": "50m", "alertname": "IncidentTickNotRunning", "exp_alerts": []},
                    {"eval_time": "50m", "alertname": "IncidentTickFailing", "exp_alerts": []},
                ],
            },
            {  # the whole cron stopped: the textfile is never rewritten after t=0
                "interval": "1m",
                "input_series": [
                    {
                        "series": 'incident_metrics_generated_timestamp_seconds{instance="h"}',
                        "values": "0x30",
                    },
                ],
                "alert_rule_test": [
                    {"eval_time": "12m", "alertname": "IncidentMetricsStale", "exp_alerts": []},
                    {
                        "eval_time": "20m",
                        "alertname": "IncidentMetricsStale",
                        "exp_alerts": [{"exp_labels": crit}],
                    },
                    {  # and `run` never ran at all
                        "eval_time": "5m",
                        "alertname": "IncidentTickNotRunning",
                        "exp_alerts": [{"exp_labels": crit}],
                    },
                ],
            },
        ],
    }
    (tmp_path / "test.yml").write_text(yaml.safe_dump(spec))
    proc = subprocess.run(
        [str(PROMTOOL), "test", "rules", "test.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
