"""report, review, metrics and status after real polls of a real Prometheus, run as cron runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.binaries import prometheus_alert_states, run_cli, stack, wait_until

pytestmark = pytest.mark.integration

RULES = """
groups:
- name: it
  interval: 1s
  rules:
  - alert: ToyHigh
    expr: toy_value > 0
    labels: {severity: critical}
"""


def test_a_real_incident_shows_up_in_report_review_metrics_and_status(tmp_path: Path) -> None:
    with stack(tmp_path / "stack", RULES, with_alertmanager=False) as (exporter, prom, _):
        config = tmp_path / "incident.yaml"
        config.write_text(
            f"sources:\n  prometheus: {{type: prometheus, url: '{prom.url}', timeout: 5s}}\n"
            "incidents: {resolve_after: 1s, reopen_within: 10m}\n"
            "rules:\n  - {name: toy, match: {alertname: ToyHigh}}\n"
        )

        def cli(*args: str) -> tuple[int, str, str]:
            result = run_cli(["-c", str(config), *args], cwd=tmp_path)
            return result.code, result.stdout, result.stderr

        exporter.set("a", 1)
        wait_until(lambda: prometheus_alert_states(prom).get("ToyHigh/a") == "firing")
        assert cli("poll")[0] == 0
        code, out, err = cli("status", "--json")
        assert code == 0, out + err
        textfile = tmp_path / "incident.prom"
        assert cli("metrics", "--textfile", str(textfile))[0] == 0
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(textfile.read_text())
            for s in f.samples
        }
        assert (
            samples[("incident_open_incidents", (("severity", "critical"), ("status", "open")))]
            == 1
        )
        assert ("incident_last_success_timestamp_seconds", (("command", "poll"),)) in samples

        assert cli("ack", "1", "--by", "alice")[0] == 0
        exporter.set("a", 0)
        wait_until(lambda: "ToyHigh/a" not in prometheus_alert_states(prom))

        def resolved() -> bool:
            cli("poll")
            code, out, _ = cli("show", "1", "--json")
            return code == 0 and '"status": "resolved"' in out

        wait_until(resolved, timeout=30, interval=0.5)

        code, out, err = cli("report", "1", "--format", "json")
        assert code == 0, err
        report = json.loads(out)
        assert report["incidents"]["opened"] == 1
        assert report["incidents"]["resolved"] == 1
        assert report["mtta_seconds"] is not None
        assert report["mttr_seconds"] >= report["mtta_seconds"]
        assert report["mttd_seconds"] >= 0
        assert report["by_severity"] == {"critical": 1}
        assert report["top_alerts"] == [{"alertname": "ToyHigh", "incidents": 1}]

        code, out, _ = cli("report", "--incident", "1")
        assert code == 0
        assert "Acknowledged by alice" in out
        assert "| acknowledged | alice |" in out
        assert "| resolved |" in out

        prom.stop()
        for _ in range(3):
            assert cli("poll")[0] == 75
        code, out, _ = cli("status")
        assert code == 1
        assert "source prometheus failed 3 ticks in a row" in out
