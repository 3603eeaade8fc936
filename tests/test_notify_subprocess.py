"""`incident notify` as cron runs it (a subprocess) against a loopback PagerDuty receiver."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from typer.testing import CliRunner

from incident_cli.cli import app
from incident_cli.cli.context import Env
from tests.support.notify import (
    Received,
    Reply,
    Setup,
    alert,
    make_setup,
    receiver,
    resolve,
    rows,
)

KEY = "pd-routing-key-for-subprocess"
ACCEPTED: Reply = (202, {"Content-Type": "application/json"}, b'{"status":"success"}')


def _setup(tmp_path: Path, url: str) -> Setup:
    spec = f"{{type: pagerduty, routing_key: {KEY}, url: '{url}/v2/enqueue', timeout: 10s}}"
    return make_setup(tmp_path, {"pd": spec})


def _notify(setup: Setup, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "incident_cli",
        "--config",
        str(setup.config_path),
        "--db",
        str(setup.db_path),
        "notify",
        *args,
    ]


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENT_")}
    env.update({"HOME": str(tmp_path), "NO_PROXY": "127.0.0.1", "NO_COLOR": "1"})
    return env


def test_a_429_with_retry_after_is_waited_for_and_delivers_exactly_one_trigger(
    tmp_path: Path,
) -> None:
    throttled: Reply = (429, {"Retry-After": "1"}, b'{"status":"throttled"}')
    with receiver([throttled, ACCEPTED]) as pd:
        setup = _setup(tmp_path, pd.url)
        setup.fire([alert(service="backend")], time.time())

        first = subprocess.run(
            _notify(setup), env=_env(tmp_path), capture_output=True, text=True, timeout=60
        )
        assert (first.returncode, first.stdout, first.stderr) == (0, "", "")
        resolve(setup, 1, time.time())
        second = subprocess.run(
            _notify(setup), env=_env(tmp_path), capture_output=True, text=True, timeout=60
        )
        assert (second.returncode, second.stdout, second.stderr) == (0, "", "")

    actions = [r.body["event_action"] for r in pd.received]
    assert actions == ["trigger", "trigger", "resolve"]  # the first trigger was answered 429
    assert len({r.body["dedup_key"] for r in pd.received}) == 1
    assert [(r["event"], r["status"], r["attempts"]) for r in rows(setup)] == [
        ("firing", "sent", 2),
        ("resolved", "sent", 1),
    ]


def test_a_tick_killed_between_send_and_mark_is_resent_with_the_same_key(
    tmp_path: Path,
) -> None:
    release = threading.Event()

    def hang_first(request: Received) -> Reply:
        if len(pd.received) == 1:
            release.wait(30)  # holds the request open until the test has killed the tick
        return ACCEPTED

    with receiver(hang_first) as pd:
        setup = _setup(tmp_path, pd.url)
        setup.fire([alert(service="backend")], time.time())
        env = _env(tmp_path)

        tick = subprocess.Popen(
            _notify(setup), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 30
        while not pd.received and time.monotonic() < deadline:
            time.sleep(0.02)
        assert pd.received, "the tick never sent anything"
        tick.send_signal(signal.SIGKILL)
        tick.wait(10)
        release.set()

        (row,) = rows(setup)
        assert (row["status"], row["attempts"]) == ("pending", 1)
        assert row["lease_until"] is not None

        # The next cron tick, while the dead tick's lease still holds: nothing is sent twice.
        early = subprocess.run(_notify(setup), env=env, capture_output=True, timeout=60)
        assert early.returncode == 0
        assert len(pd.received) == 1

        # A tick after the lease has expired sends it again.
        later = time.time() + row["lease_until"] - row["created_at"] + 1
        result = CliRunner().invoke(
            app,
            ["--config", str(setup.config_path), "--db", str(setup.db_path), "notify"],
            obj=Env(clock=lambda: later),
        )
        assert result.exit_code == 0, result.output

    assert len(pd.received) == 2
    first, again = (r.body for r in pd.received)
    assert first == again
    assert first["event_action"] == "trigger"
    (row,) = rows(setup)
    assert (row["status"], row["attempts"]) == ("sent", 2)
