"""Output read in a file, a pager or cron mail: whole lines, multi-line annotations indented
under their key, every command of an action, and each argv shell-quoted to copy and paste.

The alerts come from a loopback source, `poll` and `recover` really run the commands, and each
view is read from the CLI as a subprocess with a pipe for stdout (as cron or `| less` has it).
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.common import AlertServer
from tests.support.binaries import run_cli
from tests.support.history import HOUR, History

LONG_SERVICE = "checkout-" + "x" * 300
DESCRIPTION = "The checkout API is down.\nSteps:\n  1. look at the logs\n  2. restart it"
RESTART = ["echo", "restart {service}", "it's done; really"]
RAN = ["echo", "restart checkout", "it's done; really"]  # RESTART with the label substituted
THEN = ["printf", "%s\\n", "then $HOME stays literal"]
LONG_PATH = "/srv/" + "p" * 220
DIAGNOSE = [["echo", "disk usage", "/var/lib"], ["echo", "second diagnostic", LONG_PATH]]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    alerts = [
        {
            "labels": {"alertname": "CheckoutDown", "service": "checkout", "severity": "critical"},
            "annotations": {"summary": "checkout is down", "description": DESCRIPTION},
            "state": "firing",
            "activeAt": "2026-11-28T20:29:14Z",
            "value": "0",
        },
        {
            "labels": {"alertname": "SlowCheckout", "service": LONG_SERVICE},
            "annotations": {"summary": "p95 above the SLO"},
            "state": "firing",
            "activeAt": "2026-11-28T20:29:14Z",
            "value": "3",
        },
    ]
    path = tmp_path_factory.mktemp("readable")
    source = AlertServer()
    source.set_alerts(alerts)
    (path / "incident.yaml").write_text(
        f"""
sources:
  prometheus: {{type: prometheus, url: "{source.url}", timeout: 5s}}
recovery: {{enabled: true}}
rules:
  - name: checkout-down
    match: {{alertname: CheckoutDown}}
    handler: service_down
    recovery:
      commands: [{_flow(RESTART)}, {_flow(THEN)}]
      max_attempts: 1
  - name: slow-checkout
    match: {{alertname: SlowCheckout}}
    handler: performance_issue
    diagnostics: {{commands: [{", ".join(_flow(c) for c in DIAGNOSE)}]}}
"""
    )
    try:
        polled = run_cli(["poll"], cwd=path)
    finally:
        source.close()
    assert polled.code == 0, polled.stderr
    recovered = run_cli(["recover"], cwd=path)
    assert recovered.code == 0, recovered.stderr
    yield path


def _flow(argv: list[str]) -> str:
    """A YAML flow sequence of double-quoted strings (YAML and JSON agree on them)."""
    import json

    return "[" + ", ".join(json.dumps(a) for a in argv) + "]"


def _incident(workdir: Path, alertname: str) -> int:
    listed = run_cli(["list", "--json"], cwd=workdir).json()
    return int(next(i["id"] for i in listed if i["labels"]["alertname"] == alertname))


def _show(workdir: Path, alertname: str) -> list[str]:
    result = run_cli(["show", str(_incident(workdir, alertname))], cwd=workdir)
    assert result.code == 0, result.stderr
    return result.stdout.splitlines()


def test_timeline_lines_keep_their_whole_length_when_piped(workdir: Path) -> None:
    lines = _show(workdir, "SlowCheckout")
    done = [line for line in lines if "action_succeeded" in line]
    assert len(done) == 1
    assert done[0].endswith(f"{LONG_PATH} (exit 0)")  # not folded onto a next line
    assert len(done[0]) > 300


def test_list_keeps_each_incident_on_one_line_when_piped(workdir: Path) -> None:
    result = run_cli(["list"], cwd=workdir)
    lines = result.stdout.splitlines()
    assert len(lines) == 3  # the header and two incidents
    assert any(
        "SlowCheckout: checkout-xxx" in line and line.rstrip().endswith("ago") for line in lines
    )


def test_a_multi_line_annotation_is_indented_under_its_key(workdir: Path) -> None:
    lines = _show(workdir, "CheckoutDown")
    at = lines.index("  description  The checkout API is down.")
    assert lines[at + 1 : at + 4] == [
        " " * 15 + "Steps:",
        " " * 15 + "  1. look at the logs",
        " " * 15 + "  2. restart it",
    ]


def _action_rows(lines: list[str]) -> list[str]:
    return lines[lines.index("Actions") + 2 :]


def test_show_lists_every_command_of_an_action_shell_quoted(workdir: Path) -> None:
    rows = _action_rows(_show(workdir, "CheckoutDown"))
    first, then = shlex.join(RAN), shlex.join(THEN)
    assert first in rows[0] and rows[0].split()[2] == "succeeded"  # as it ran
    assert rows[1].strip() == then  # the second command, on its own line under the first
    assert shlex.split(first) == RAN  # copied from the screen, it is the same argv
    assert shlex.split(then) == THEN


def test_show_lists_every_diagnostic_command(workdir: Path) -> None:
    rows = _action_rows(_show(workdir, "SlowCheckout"))
    assert shlex.join(DIAGNOSE[0]) in rows[0]
    assert rows[1].strip() == shlex.join(DIAGNOSE[1])


def test_the_timeline_shows_what_ran_shell_quoted(workdir: Path) -> None:
    lines = _show(workdir, "CheckoutDown")
    ran = shlex.join(RAN)
    planned = next(line for line in lines if "action_planned" in line)
    assert planned.endswith(f"planned command: {shlex.join(RESTART)}; {shlex.join(THEN)}")
    started = next(line for line in lines if "action_started" in line)
    assert f"{ran}; {shlex.join(THEN)}" in started


def test_the_review_lists_every_command_shell_quoted(workdir: Path) -> None:
    review = run_cli(["report", "--incident", str(_incident(workdir, "CheckoutDown"))], cwd=workdir)
    row = next(line for line in review.stdout.splitlines() if line.startswith("| 1 | command"))
    assert f"`{shlex.join(RAN)}`; `{shlex.join(THEN)}`" in row


def test_a_report_written_to_a_file_is_not_folded(tmp_path: Path) -> None:
    h = History.at(tmp_path / "incident.db")
    title = "FlappingCheckout: " + "y" * 80
    h.incident(opened=time.time() - HOUR, title=title, reopen_count=3, flapping=True)
    target = tmp_path / "report.txt"
    result = run_cli(
        ["--db", str(tmp_path / "incident.db"), "report", "24", "--output", str(target)],
        cwd=tmp_path,
    )
    assert result.code == 0, result.stderr
    row = next(line for line in target.read_text().splitlines() if "FlappingCheckout" in line)
    assert title in row and "flapping" in row
