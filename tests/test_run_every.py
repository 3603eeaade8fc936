"""`incident run --every D --for D`: several ticks in one invocation, under one lock, each with
its heartbeat; SIGTERM between ticks; the exit code of the whole; `cron print --every`."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from incident_cli.runtime import repeat_exit
from tests.support.binaries import cli_env, run_cli, serve_get, wait_until
from tests.support.builders import write_config

EMPTY = json.dumps({"status": "success", "data": {"alerts": []}}).encode()


@pytest.fixture
def answers() -> Iterator[tuple[str, list[int]]]:
    """A Prometheus that answers no alerts; the test sets the status of each next answer."""
    statuses: list[int] = []

    def answer(headers: object) -> tuple[int, bytes]:
        status = statuses.pop(0) if statuses else 200
        return status, EMPTY if status == 200 else b"{}"

    with serve_get(answer) as url:
        yield url, statuses


def logged_config(tmp_path: Path, url: str) -> Path:
    """One Prometheus source at `url`, and the JSON event log in events.jsonl."""
    return write_config(
        tmp_path,
        f"sources:\n  prometheus: {{type: prometheus, url: '{url}', timeout: 1s}}\n"
        "log: {file: events.jsonl, format: json}\n",
    )


def ticks_logged(tmp_path: Path) -> list[dict[str, object]]:
    log = tmp_path / "events.jsonl"
    if not log.exists():
        return []
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return [r for r in lines if r.get("type") == "tick" and r.get("command") == "run"]


def start(tmp_path: Path, config: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "incident_cli", "-c", str(config), "run", *args],
        cwd=tmp_path,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )


def test_the_lock_is_held_across_ticks_and_each_tick_leaves_its_heartbeat(
    tmp_path: Path, answers: tuple[str, list[int]]
) -> None:
    config = logged_config(tmp_path, answers[0])
    first = start(tmp_path, config, "--every", "2s", "--for", "6s")
    try:
        wait_until(lambda: ticks_logged(tmp_path), timeout=20)  # between ticks 1 and 2
        second = run_cli(["-c", str(config), "run"], cwd=tmp_path)
        assert second.code == 75
        assert "holds the lock" in second.stderr and "incident.db.lock" in second.stderr
        out, err = first.communicate(timeout=30)
    finally:
        first.kill()
    assert first.returncode == 0, err
    assert (out, err) == ("", "")
    ticks = ticks_logged(tmp_path)
    assert len(ticks) == 4, ticks  # at 0s, 2s, 4s and 6s: --for counts the tick at its end
    assert [t["exit_code"] for t in ticks] == [0, 0, 0, 0]
    assert len({t["at"] for t in ticks}) == 4  # one heartbeat per tick, at its own time


def test_sigterm_ends_it_between_ticks_with_the_heartbeats_written(
    tmp_path: Path, answers: tuple[str, list[int]]
) -> None:
    config = logged_config(tmp_path, answers[0])
    proc = start(tmp_path, config, "--every", "2s", "--for", "60s")
    try:
        wait_until(lambda: len(ticks_logged(tmp_path)) >= 2, timeout=30)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert time.monotonic() - sent < 3  # woken from its sleep, not at the next tick or 60s
    assert proc.returncode == 0, err
    assert (out, err) == ("", "")
    ticks = ticks_logged(tmp_path)
    assert len(ticks) in (2, 3) and all(t["exit_code"] == 0 for t in ticks)
    # The lock is free again: the next invocation runs.
    assert run_cli(["-c", str(config), "run"], cwd=tmp_path).code == 0


def test_a_source_down_only_in_an_early_tick_exits_0_and_down_at_the_end_75(
    tmp_path: Path, answers: tuple[str, list[int]]
) -> None:
    url, statuses = answers
    config = logged_config(tmp_path, url)
    statuses[:] = [503]  # the first tick's poll fails, the later ones answer
    early = run_cli(["-c", str(config), "run", "--every", "1s", "--for", "2s"], cwd=tmp_path)
    assert early.code == 0, early.stderr
    assert "source prometheus" in early.stderr  # said once, when it happened
    assert [t["exit_code"] for t in ticks_logged(tmp_path)] == [75, 0, 0]

    statuses[:] = [200, 503]  # fine, then down in the last tick
    late = run_cli(["-c", str(config), "run", "--every", "1s", "--for", "1s"], cwd=tmp_path)
    assert late.code == 75
    assert [t["exit_code"] for t in ticks_logged(tmp_path)][3:] == [0, 75]


def test_a_failure_in_any_tick_outranks_later_good_ticks() -> None:
    assert repeat_exit([1, 0, 0]) == 1
    assert repeat_exit([75, 1, 75]) == 1
    assert repeat_exit([75, 0]) == 0
    assert repeat_exit([0, 75]) == 75
    assert repeat_exit([]) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--every", "0s", "--for", "5s"], "--every must be more than 0s"),
        (["--every", "5s", "--for", "2s"], "--for 2s is shorter than --every 5s"),
        (["--every", "5s"], "--every and --for go together"),
        (["--for", "5s"], "--every and --for go together"),
        (["--every", "soon", "--for", "5s"], "--every:"),
        (
            ["--every", "5s", "--for", "55s", "--max-runtime", "10s"],
            "--max-runtime 10s is longer than --every 5s",
        ),
    ],
)
def test_bad_schedules_are_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    config = tmp_path / "incident.yaml"
    config.write_text("{}\n")
    result = run_cli(["-c", str(config), "run", *args], cwd=tmp_path)
    assert result.code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "incident.db.lock").exists()


def test_cron_print_every_writes_the_minute_line_and_a_timer(tmp_path: Path) -> None:
    config = tmp_path / "incident.yaml"
    config.write_text("{}\n")
    printed = run_cli(["-c", str(config), "cron", "print", "--every", "5s"], cwd=tmp_path)
    assert printed.code == 0, printed.stderr
    run_line = next(line for line in printed.stdout.splitlines() if line.endswith("55s"))
    assert run_line.startswith("* * * * * ")
    assert run_line.endswith("--quiet --wait 5 run --every 5s --for 55s")

    units = run_cli(
        ["-c", str(config), "cron", "print", "--systemd", "--every", "5s"], cwd=tmp_path
    ).stdout
    timer = units.split("incident.timer\n", 1)[1]
    assert "OnUnitActiveSec=5s\n" in timer and "AccuracySec=1s\n" in timer
    assert "OnCalendar" not in timer
    assert "--quiet run --max-runtime 5s\n" in units  # a tick ends before the next is due

    too_slow = run_cli(["-c", str(config), "cron", "print", "--every", "45s"], cwd=tmp_path)
    assert too_slow.code == 2 and "at most 30s" in too_slow.stderr
