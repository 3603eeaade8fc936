"""Test-only: kill this process at a named step, so the fault tests can crash a tick exactly
where it matters. Inert unless INCIDENT_TEST_CRASH_AT is set; never set it in production."""

from __future__ import annotations

import os
import signal

# Not a setting: tests/faults sets it on the `incident` processes it kills.
CRASH_VAR = "INCIDENT_TEST_CRASH_AT"


def crash_point(step: str) -> None:
    """SIGKILL this process when INCIDENT_TEST_CRASH_AT names `step` (poll-read,
    notify-claimed, sent, action-claimed, command-started)."""
    if os.environ.get(CRASH_VAR) == step:
        os.kill(os.getpid(), signal.SIGKILL)
