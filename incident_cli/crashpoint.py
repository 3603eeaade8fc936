"""Test-only: kill (or stop) this process at a named step, so the fault tests can crash or stall
a tick exactly where it matters. Inert unless INCIDENT_TEST_CRASH_AT or INCIDENT_TEST_STOP_AT is
set; never set them in production."""

from __future__ import annotations

import os

# Not settings: tests/faults and the fencing tests set them on the `incident` processes they
# kill or stall.
CRASH_VAR = "INCIDENT_TEST_CRASH_AT"
STOP_VAR = "INCIDENT_TEST_STOP_AT"


def crash_point(step: str) -> None:
    """SIGKILL this process when INCIDENT_TEST_CRASH_AT names `step` (poll-read,
    notify-claimed, sent, action-claimed, command-started); SIGSTOP it (a host that stalls
    until someone sends SIGCONT) when INCIDENT_TEST_STOP_AT names it."""
    crash, stop = os.environ.get(CRASH_VAR) == step, os.environ.get(STOP_VAR) == step
    if not (crash or stop):
        return
    import signal  # (and its enums) only when a test asks for it

    os.kill(os.getpid(), signal.SIGKILL if crash else signal.SIGSTOP)
