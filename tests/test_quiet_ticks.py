"""Cron mails every line: a source that stays down is reported once when it fails and once when
it answers again, not every tick; `status` and the source-unreachable incident carry the state."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.binaries import free_port, run_cli, start_prometheus
from tests.support.builders import write_config

NO_RULES = "groups: []\n"


def prometheus_at(tmp_path: Path, url: str) -> Path:
    return write_config(
        tmp_path, f"sources:\n  prometheus: {{type: prometheus, url: '{url}', timeout: 2s}}\n"
    )


@pytest.mark.integration
def test_a_source_that_stays_down_is_reported_on_failure_and_on_recovery(tmp_path: Path) -> None:
    prom = start_prometheus(tmp_path / "prom", NO_RULES, [])
    prom.stop()  # down from the first tick on, at the URL the config names
    config = prometheus_at(tmp_path, prom.url)
    tick = ["-c", str(config), "--quiet", "run"]
    try:
        first = run_cli(tick, cwd=tmp_path)
        assert first.code == 75
        assert first.stdout == ""
        lines = first.stderr.splitlines()
        assert len(lines) == 1, first.stderr
        assert lines[0].startswith("incident: poll: source prometheus: connection refused")
        assert "not repeated until it answers again" in lines[0]

        for _ in range(3):  # the third failure in a row opens the source-unreachable incident
            later = run_cli(tick, cwd=tmp_path)
            assert (later.code, later.stdout, later.stderr) == (75, "", "")

        verbose = run_cli(["-c", str(config), "-v", "run"], cwd=tmp_path)
        assert verbose.code == 75
        assert "incident: poll: source prometheus: connection refused" in verbose.stderr

        status = run_cli(["-c", str(config), "status", "--json"], cwd=tmp_path)
        (source,) = status.json()["sources"]
        assert source["name"] == "prometheus" and source["consecutive_failures"] == 5
        incidents = run_cli(["-c", str(config), "list", "--json"], cwd=tmp_path).json()
        assert [i["title"] for i in incidents] == ["IncidentSourceUnreachable: prometheus"]

        prom.start()  # the same Prometheus, back on its port
        back = run_cli(tick, cwd=tmp_path)
        assert back.code == 0
        assert (back.stdout, back.stderr) == (
            "",
            "incident: poll: source prometheus answers again\n",
        )

        steady = run_cli(tick, cwd=tmp_path)
        assert (steady.code, steady.stdout, steady.stderr) == (0, "", "")
    finally:
        prom.stop()


def test_poll_alone_says_a_failure_once_and_every_time_with_verbose(tmp_path: Path) -> None:
    config = prometheus_at(tmp_path, f"http://127.0.0.1:{free_port()}")
    first = run_cli(["-c", str(config), "poll"], cwd=tmp_path)
    assert first.code == 75 and "connection refused" in first.stderr
    again = run_cli(["-c", str(config), "poll"], cwd=tmp_path)
    assert (again.code, again.stdout, again.stderr) == (75, "", "")
    verbose = run_cli(["-c", str(config), "-v", "poll"], cwd=tmp_path)
    assert verbose.code == 75 and "connection refused" in verbose.stderr
