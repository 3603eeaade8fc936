"""`make demo`'s script end to end: real binaries, a backend that breaks, `incident run` ticks
that open, recover and resolve the incident, and the report."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.harness import REPO

pytestmark = pytest.mark.integration


def test_the_demo_recovers_the_backend_and_prints_the_report() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / "demo.py")],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "NO_COLOR": "1", "HOME": "/tmp"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "recovered automatically" in out
    assert "notification to /slack: [RESOLVED] BackendServiceDown: backend" in out
    assert "# Post-incident review: #1 BackendServiceDown: backend" in out
    assert "Incident report — last 1h" in out
