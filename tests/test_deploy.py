"""`incident cron print` and the shipped cron/systemd files."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from incident_cli.cli import app
from incident_cli.deploy import SHIPPED, crontab, service_unit, timer_unit

REPO = Path(__file__).resolve().parent.parent


def test_cron_print_uses_absolute_paths_of_this_install(tmp_path: Path) -> None:
    config = tmp_path / "incident.yaml"
    config.write_text("{}\n")
    result = CliRunner().invoke(app, ["-c", str(config), "cron", "print"])
    assert result.exit_code == 0, result.output
    jobs = [line for line in result.stdout.splitlines() if line and not line.startswith("#")]
    assert jobs[0].split()[:5] == ["*"] * 5
    run_line = jobs[0]
    program = run_line.split()[5]
    assert Path(program).is_absolute() and Path(program).exists()
    assert f"-c {config}" in run_line and run_line.endswith("--quiet run")
    assert any(" report 1 " in line for line in jobs)
    assert any("archive --older-than" in line for line in jobs)


def test_cron_print_systemd_adds_both_units(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["cron", "print", "--systemd"])
    assert result.exit_code == 0
    assert "[Service]" in result.stdout and "[Timer]" in result.stdout
    exec_start = next(line for line in result.stdout.splitlines() if line.startswith("ExecStart="))
    assert Path(exec_start.split("=", 1)[1].split()[0]).is_absolute()
    assert exec_start.endswith("--quiet run")


def parse_unit(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=True, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    return parser


def test_the_service_is_sandboxed_and_private() -> None:
    unit = parse_unit(service_unit(SHIPPED))["Service"]
    assert unit["Type"] == "oneshot"
    assert unit["UMask"] == "0077" and unit["StateDirectory"] == "incident"
    assert unit["ProtectSystem"] == "strict" and unit["NoNewPrivileges"] == "yes"
    assert unit["SuccessExitStatus"] == "75"
    assert unit["ExecStart"].startswith("/usr/local/bin/incident -c /etc/incident/incident.yaml")
    timer = parse_unit(timer_unit())
    assert timer["Timer"]["OnCalendar"] == "*-*-* *:*:00"
    assert timer["Install"]["WantedBy"] == "timers.target"


def test_the_shipped_files_are_the_generated_ones() -> None:
    assert (REPO / "cron" / "incident.crontab").read_text() == crontab(SHIPPED)
    assert (REPO / "cron" / "incident.service").read_text() == service_unit(SHIPPED)
    assert (REPO / "cron" / "incident.timer").read_text() == timer_unit()


def test_the_env_file_names_every_variable_a_deployment_sets() -> None:
    from incident_cli.config.env import DEPLOYED_KINDS, variables

    text = (REPO / "cron" / "incident.env.example").read_text()
    for variable in variables():
        if variable.kind in DEPLOYED_KINDS:
            assert f"{variable.name}=" in text, variable.name


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verifies_the_units(tmp_path: Path) -> None:
    (tmp_path / "incident.service").write_text(
        service_unit(SHIPPED).replace("/usr/local/bin/incident", "/bin/true")
    )
    (tmp_path / "incident.timer").write_text(timer_unit())
    result = subprocess.run(
        [
            "systemd-analyze",
            "verify",
            str(tmp_path / "incident.service"),
            str(tmp_path / "incident.timer"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    problems = [line for line in result.stderr.splitlines() if str(tmp_path) in line]
    assert problems == [], result.stderr


def test_cron_lines_pin_the_db_and_escape_percent(tmp_path: Path) -> None:
    odd = tmp_path / "100%"
    odd.mkdir()
    config = odd / "incident.yaml"
    config.write_text("{}\n")
    result = CliRunner().invoke(app, ["-c", str(config), "cron", "print"])
    run_line = next(line for line in result.stdout.splitlines() if line.endswith(" run"))
    assert f"--db {odd}/incident.db".replace("%", "\\%") in run_line
    assert "100\\%" in run_line and "100%/" not in run_line


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_a_db_outside_the_state_directory_is_made_writable_and_odd_paths_verify(
    tmp_path: Path,
) -> None:
    from incident_cli.deploy import Install

    odd = tmp_path / "my 100% state"
    install = Install(
        program=("/bin/true",), config=str(odd / "incident.yaml"), db=str(odd / "incident.db")
    )
    text = service_unit(install)
    unit = parse_unit(text)["Service"]
    assert unit["ReadWritePaths"] == f'"{str(odd).replace("%", "%%")}"'
    assert unit["Environment"] == f'"INCIDENT_DB={str(odd / "incident.db").replace("%", "%%")}"'
    (tmp_path / "incident.service").write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / "incident.service")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert [line for line in result.stderr.splitlines() if str(tmp_path) in line] == [], (
        result.stderr
    )
