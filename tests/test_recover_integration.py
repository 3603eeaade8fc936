"""End to end with a real Prometheus: a toy backend dies, `BackendServiceDown` fires, `poll`
then `recover` restart it with a script, the health check passes, the alert clears, and the
incident resolves as `recovered` — every step run as cron runs it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.binaries import (
    CliResult,
    free_port,
    http_json,
    prometheus_alert_states,
    run_cli,
    start_prometheus,
    wait_until,
)

pytestmark = pytest.mark.integration

TOY = Path(__file__).parent / "support" / "toy_service.py"

RULES = """
groups:
- name: backend
  interval: 1s
  rules:
  - alert: BackendServiceDown
    expr: up{job="toy"} == 0
    labels: {severity: critical, service: backend}
    annotations: {summary: "the toy backend is down"}
"""


def start_toy(port: int, pidfile: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, str(TOY), str(port), str(pidfile)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_until(lambda: http_json_ok(f"http://127.0.0.1:{port}/health"), timeout=10)
    return proc


def http_json_ok(url: str) -> bool:
    import urllib.request

    with urllib.request.urlopen(url, timeout=2) as response:
        return bool(response.status == 200)


def kill_pidfile(pidfile: Path) -> None:
    with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
        os.kill(int(pidfile.read_text()), signal.SIGKILL)


def test_a_dead_backend_is_restarted_verified_and_resolved_as_recovered(tmp_path: Path) -> None:
    port = free_port()
    pidfile = tmp_path / "toy.pid"
    # The restart script cron's `incident recover` will run; it leaves the backend running
    # detached from its output so the tick ends at once.
    restart = tmp_path / "restart.sh"
    restart.write_text(
        "#!/bin/sh\n"
        'echo "restart $1 (attempt $INCIDENT_ATTEMPT)" >> restarts.log\n'
        f"{sys.executable} {TOY} {port} {pidfile} </dev/null >/dev/null 2>&1 &\n"
        'echo "started $1"\n'
    )
    restart.chmod(0o755)
    config = tmp_path / "incident.yaml"
    state = str(tmp_path / "state.db")

    first = start_toy(port, pidfile)
    prom = start_prometheus(tmp_path / "prom", RULES, [f"127.0.0.1:{port}"])
    try:
        config.write_text(
            f"""
sources:
  prometheus: {{type: prometheus, url: "{prom.url}", timeout: 5s}}
incidents: {{resolve_after: 1s}}
rules:
  - name: backend-down
    match: {{alertname: BackendServiceDown}}
    handler: service_down
    group_by: [alertname, service]
    recovery:
      commands: [["./restart.sh", "{{service}}"]]
      timeout: 30s
      verify: {{http: "http://127.0.0.1:{port}/health", within: 2m}}
      max_attempts: 3
      backoff: 5s
"""
        )

        def cli(*args: str) -> CliResult:
            return run_cli(["-c", str(config), "--db", state, *args], cwd=tmp_path)

        def show() -> dict[str, Any]:
            result = cli("show", "1", "--json")
            assert result.code == 0, result.stderr
            shown: dict[str, Any] = result.json()
            return shown

        def scraped_up() -> bool:
            body = http_json(prom.url + '/api/v1/query?query=up{job="toy"}')
            return any(r["value"][1] == "1" for r in body["data"]["result"])

        wait_until(scraped_up, timeout=30)
        # Nothing is wrong yet: a poll opens nothing.
        assert cli("poll").code == 0
        assert cli("list", "--json").json() == []

        # The backend dies.
        first.kill()
        first.wait()
        wait_until(
            lambda: prometheus_alert_states(prom).get("BackendServiceDown/") == "firing",
            timeout=30,
        )
        killed_at = time.monotonic()
        polled = cli("poll")
        assert polled.code == 0, polled.stderr
        [incident] = cli("list", "--json").json()
        assert (incident["handler"], incident["status"]) == ("service_down", "open")

        recovered = cli("recover")
        assert recovered.code == 0, recovered.stderr
        assert (tmp_path / "restarts.log").read_text() == "restart backend (attempt 1)\n"

        # Ticks as cron runs them: poll, then recover, until the incident resolves.
        def tick_until_resolved() -> dict[str, Any] | None:
            assert cli("poll").code == 0
            assert cli("recover").code == 0
            shown = show()
            return shown if shown["status"] == "resolved" else None

        final = wait_until(tick_until_resolved, timeout=60, interval=0.5)
        elapsed = time.monotonic() - killed_at
    finally:
        prom.stop()
        kill_pidfile(pidfile)
        if first.poll() is None:
            first.kill()

    assert final["resolution"] == "recovered"
    [action] = final["actions"]
    assert action["kind"] == "command" and action["status"] == "succeeded"
    assert action["command"] == ["./restart.sh", "backend"]
    assert action["attempts"] == 1 and action["exit_code"] == 0
    assert "started backend" in action["output"]
    kinds = [e["kind"] for e in final["timeline"]]
    for kind in ("opened", "action_planned", "action_started", "action_succeeded", "resolved"):
        assert kind in kinds
    assert kinds.index("action_succeeded") < kinds.index("resolved")
    # Exactly one restart: the fix worked first time.
    assert (tmp_path / "restarts.log").read_text().count("restart") == 1
    print(f"\nkill → resolved as recovered in {elapsed:.1f}s")
