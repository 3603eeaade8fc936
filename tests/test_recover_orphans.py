"""A killed `recover` leaves its command running in a session of its own; the tick that finds
the attempt's lease expired stops that process group before the retry can run beside it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from incident_cli.recovery.tick import recover_due
from incident_cli.store.connection import open_db
from tests.support.binaries import cli_env, wait_until
from tests.support.recover import actions, alert, db_for, fire, load, recovery_config, script

pytestmark = pytest.mark.usefixtures("both_backends")

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")

RULES = """
defaults: {notify: []}
rules:
  - name: backend-down
    match: {alertname: BackendServiceDown}
    handler: service_down
    group_by: [alertname, service]
    recovery: {commands: [["./fix.sh"]], timeout: 10m, max_attempts: 3, backoff: 10s}
"""

# Attempt 1 hangs (with a grandchild in its group); the retry says whether attempt 1's group
# was still alive when it ran.
FIX = """\
echo "attempt $INCIDENT_ATTEMPT" >> runs.log
if [ "$INCIDENT_ATTEMPT" = 1 ]; then
  sleep 300 &
  echo $! > grandchild.pid
  echo $$ > leader.pid
  wait
fi
state=$(sed 's/.*) //' "/proc/$(cat grandchild.pid)/stat" 2>/dev/null | cut -c1)
if [ -n "$state" ] && [ "$state" != Z ]; then echo "first still alive" >> runs.log; fi
"""


def alive(pid: int) -> bool:
    """A live process, not a zombie nobody reaped yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


@contextlib.contextmanager
def cleanup(*paths: Path) -> Iterator[None]:
    """Whatever happens, leave no sleep behind."""
    try:
        yield
    finally:
        for path in paths:
            with contextlib.suppress(OSError, ValueError):
                os.killpg(int(path.read_text()), signal.SIGKILL)


def test_a_killed_recovers_command_is_stopped_before_its_retry_runs(tmp_path: Path) -> None:
    script(tmp_path, "fix.sh", FIX)
    path = recovery_config(tmp_path, RULES)
    config = load(path)
    db = db_for(tmp_path)
    start = time.time() - 1
    fire(db, config, start, alert(alertname="BackendServiceDown", service="backend"))
    db.close()

    leader_file, grandchild_file = tmp_path / "leader.pid", tmp_path / "grandchild.pid"
    with cleanup(leader_file):
        tick = subprocess.Popen(
            [sys.executable, "-m", "incident_cli", "--config", str(path), "recover"],
            cwd=tmp_path,
            env=cli_env({"INCIDENT_DB": str(tmp_path / "state.db")}),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_until(lambda: grandchild_file.exists() and grandchild_file.read_text(), 20)
            db = open_db(tmp_path / "state.db")
            # The process group is on the action row as soon as the command has started.
            wait_until(lambda: actions(db) and db.execute("SELECT pgid FROM actions").fetchone()[0])
        finally:
            tick.kill()  # SIGKILL: cron's tick dies, its command does not
            tick.wait()
        leader = int(leader_file.read_text())
        grandchild = int(grandchild_file.read_text())
        pid, pgid, lease_until = db.execute("SELECT pid, pgid, lease_until FROM actions").fetchone()
        assert (pid, pgid) == (leader, leader)
        assert alive(leader) and alive(grandchild)  # orphaned, still running

        # The next tick, once the lease has run out: the group is gone, then the retry is planned.
        result = recover_due(db, config, lease_until + 1)
        assert [a.outcome for a in result.actions] == ["failed"]
        assert "was stopped" in (result.actions[0].detail or "")
        assert not alive(leader) and not alive(grandchild)
        first, retry = actions(db)
        assert first["status"] == "failed" and retry["status"] == "pending"

        recover_due(db, config, lease_until + 30)
        assert (tmp_path / "runs.log").read_text().splitlines() == ["attempt 1", "attempt 2"]
        assert actions(db)[1]["status"] == "succeeded"


def test_a_recorded_pid_that_is_now_another_process_is_left_alone(tmp_path: Path) -> None:
    script(tmp_path, "fix.sh", "true\n")
    config = load(recovery_config(tmp_path, RULES))
    db = db_for(tmp_path)
    fire(db, config, 1_800_000_000.0, alert(alertname="BackendServiceDown", service="b"))
    # Someone else's process, in a group of its own, under the pid the dead tick recorded.
    other = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        db.conn.execute(
            "UPDATE actions SET status = 'running', attempts = 1, started_at = ?,"
            " lease_until = ?, pid = ?, pgid = ?, proc_start = ?",
            (1_800_000_001.0, 1_800_000_100.0, other.pid, other.pid, 12345),  # another start
        )
        result = recover_due(db, config, 1_800_000_200.0)
        assert [a.outcome for a in result.actions] == ["failed"]
        assert "was stopped" not in (result.actions[0].detail or "")
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()
