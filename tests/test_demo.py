"""`make demo`'s script end to end: real binaries, a backend that breaks, `incident run` ticks
that open, recover and resolve the incident, and the report."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.binaries import REPO


@pytest.mark.integration
def test_the_demo_recovers_the_backend_and_prints_the_report(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / "demo.py")],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO,
        env={
            "PATH": "/usr/bin:/bin:/usr/sbin:/sbin",
            "NO_COLOR": "1",
            "HOME": "/tmp",
            "TMPDIR": str(tmp_path),
        },
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    lines = out.splitlines()
    assert lines[0].startswith("starting Prometheus, Alertmanager")
    # A receiver line comes under the tick that sent it, not before it.
    opening_tick = next(
        i for i, line in enumerate(lines) if line.startswith("tick ") and "opened 1" in line
    )
    first_notification = next(i for i, line in enumerate(lines) if "↳ notification" in line)
    assert opening_tick < first_notification
    assert list(tmp_path.glob("incident-demo-*")) == []  # it cleans up after itself
    assert "recovered automatically" in out
    assert "notification to /slack: [RESOLVED] BackendServiceDown: backend" in out
    assert "# Post-incident review: #1 BackendServiceDown: backend" in out
    assert "Incident report — last 1h" in out


def test_make_says_what_it_does_while_it_sets_up_the_venv(tmp_path: Path) -> None:
    result = subprocess.run(
        ["make", "-n", "demo", f"VENV={tmp_path / 'venv'}"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    steps = result.stdout.splitlines()
    announce = next(i for i, line in enumerate(steps) if "Setting up" in line)
    install = next(i for i, line in enumerate(steps) if "pip install" in line)
    assert announce < install
    assert "first run only" in steps[announce]
