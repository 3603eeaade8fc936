"""What cron mails: the hourly report line only for hours with incidents, a textfile error that
names what the user named, and one line when state lands in cron's working directory."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

from tests.support.binaries import cli_env, free_port, run_cli


def cron_line(tmp_path: Path, config: Path, command: str) -> str:
    """The command of one line of `incident cron print` (what the crontab runs)."""
    printed = run_cli(["-c", str(config), "cron", "print"], cwd=tmp_path)
    assert printed.code == 0, printed.stderr
    line = next(
        line
        for line in printed.stdout.splitlines()
        if not line.startswith("#") and f" {command} " in f"{line} "
    )
    return line.split(None, 5)[5]


def run_as_cron(command: str, home: Path) -> subprocess.CompletedProcess[str]:
    """`sh -c` in $HOME with cron's bare environment, as cron runs a crontab line."""
    return subprocess.run(
        ["/bin/sh", "-c", command],
        cwd=home,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def test_the_hourly_report_line_prints_nothing_for_an_hour_without_incidents(
    tmp_path: Path,
) -> None:
    config = tmp_path / "incident.yaml"
    config.write_text("{}\n")
    report = cron_line(tmp_path, config, "report")
    assert "--quiet-if-empty" in shlex.split(report)

    empty = run_as_cron(report, tmp_path)
    assert (empty.returncode, empty.stdout, empty.stderr) == (0, "", "")

    for _ in range(3):  # three failed checkouts in a row open an anomaly incident
        assert (
            run_cli(
                [
                    "-c",
                    str(config),
                    "journey",
                    "record",
                    "checkout",
                    "--fail",
                    "--latency-ms",
                    "90",
                ],
                cwd=tmp_path,
            ).code
            == 0
        )
    assert run_cli(["-c", str(config), "detect-anomalies"], cwd=tmp_path).code == 0

    full = run_as_cron(report, tmp_path)
    assert full.returncode == 0, full.stderr
    assert full.stdout.startswith("# Incident report: last 1h")
    assert "JourneyAnomaly" in full.stdout


def test_quiet_if_empty_is_for_the_window_report_only(tmp_path: Path) -> None:
    result = run_cli(["report", "--incident", "1", "--quiet-if-empty"], cwd=tmp_path)
    assert result.code == 2
    assert result.stderr == (
        "incident: --quiet-if-empty is for the window report, not --incident\n"
    )


def test_a_textfile_in_a_missing_directory_names_the_directory(tmp_path: Path) -> None:
    (tmp_path / "incident.yaml").write_text("{}\n")
    target = tmp_path / "node-exporter" / "incident.prom"
    result = run_cli(["metrics", "--textfile", str(target)], cwd=tmp_path)
    assert result.code == 1
    assert result.stderr == (
        f"incident: cannot write {target}: the directory {target.parent} does not exist\n"
    )
    report = run_cli(["report", "--output", str(target)], cwd=tmp_path)
    assert report.code == 1
    assert f"the directory {target.parent} does not exist" in report.stderr
    assert ".tmp" not in result.stderr + report.stderr


def test_with_no_config_file_the_first_tick_says_where_its_state_went(tmp_path: Path) -> None:
    env = {"PROMETHEUS_URL": f"http://127.0.0.1:{free_port()}"}
    first = run_cli(["--quiet", "run"], cwd=tmp_path, env=env)
    assert first.code == 75
    said = [line for line in first.stderr.splitlines() if "built-in defaults" in line]
    assert said == [
        "incident: no config file ./incident.yaml: using the built-in defaults; created the"
        f" state DB {tmp_path / 'incident.db'} (name a config file with -c or"
        " INCIDENT_CONFIG, or the DB with --db or INCIDENT_DB)"
    ]
    assert (tmp_path / "incident.db").exists()
    later = run_cli(["--quiet", "run"], cwd=tmp_path, env=env)
    assert later.code == 75 and "built-in defaults" not in later.stderr


def test_a_config_file_makes_creating_the_db_silent(tmp_path: Path) -> None:
    (tmp_path / "incident.yaml").write_text("{}\n")
    result = run_cli(["--quiet", "run"], cwd=tmp_path)
    assert (result.code, result.stdout, result.stderr) == (0, "", "")
    assert (tmp_path / "incident.db").exists()
