"""Failover with real processes: two hosts tick against one state DB (a SQLite file both share,
or PostgreSQL), the lock holder is killed with SIGKILL at random moments (20 times) and
restarted, with a real Alertmanager, a webhook receiver, a PagerDuty mock and a recovery
command (tests/support/failover.py). Afterwards: every incident resolved, its firing and
resolved messages at each channel (a duplicate only where a claim was taken over), no recovery
attempt run twice, nothing left running or claimed, and no tick on both hosts at once. The long
run with its figures is bench/failover.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.failover import run_failover

pytestmark = pytest.mark.integration


def test_killing_the_lock_holder_20_times_loses_nothing_and_runs_nothing_twice(
    tmp_path: Path, state_db: str
) -> None:
    result = run_failover(tmp_path, state_db, kills=20)
    assert result.violations == []
    assert result.kills == 20
    assert result.incidents >= 5
    assert set(result.ticks) == {"a", "b"} and all(result.ticks.values())
    # Failovers completed: a successful tick on the other host before the next kill.
    assert result.failover_seconds
