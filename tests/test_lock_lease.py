"""The PostgreSQL tick lock's lease: a host that stalls while it holds the lock (SIGSTOP, as a
frozen VM) keeps its connection and so its advisory lock, but its lease runs out, and the next
host ends its session and ticks. A healthy host busy in a long recovery command keeps renewing
its lease and is never evicted.

Real `incident` processes (INCIDENT_HOSTNAME a and b) on a real PostgreSQL, against a real
Alertmanager and a webhook receiver; the lease is short (INCIDENT_LOCK_LEASE) to keep them fast.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.binaries import CliResult, cli_env, process_state, run_cli, wait_until
from tests.support.failover import state_sql
from tests.support.faults import pipeline
from tests.support.postgres import PostgresServer

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

LEASE = "2"


@pytest.fixture
def pg_db(postgres_server: PostgresServer, migrated_template: str) -> Iterator[str]:
    name = postgres_server.create_database(template=migrated_template)
    yield postgres_server.url(name)
    postgres_server.drop_database(name)


def env_for(host: str, **extra: str) -> dict[str, str]:
    return {"INCIDENT_HOSTNAME": host, "INCIDENT_LOCK_LEASE": LEASE, **extra}


def start(workdir: Path, db: str, host: str, *argv: str, **extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "incident_cli", "-c", "incident.yaml", "--db", db, *argv],
        cwd=workdir,
        env=cli_env(env_for(host, **extra)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def tick(workdir: Path, db: str, host: str, *argv: str) -> CliResult:
    return run_cli(["-c", "incident.yaml", "--db", db, *argv], cwd=workdir, env=env_for(host))


@contextmanager
def reaped(proc: subprocess.Popen[str]) -> Iterator[subprocess.Popen[str]]:
    """`proc`, killed and reaped afterwards if a failed assertion left it running."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def count(db: str, table: str) -> int:
    return int(state_sql(db, f"SELECT count(*) FROM {table}")[0][0])


def test_a_stalled_holder_is_evicted_once_its_lease_runs_out_and_writes_nothing_when_it_wakes(
    tmp_path: Path, pg_db: str
) -> None:
    db = pg_db
    with pipeline(tmp_path):
        # Host a takes the tick lock and stalls (SIGSTOP) right after reading the alerts.
        with reaped(start(tmp_path, db, "a", "run", INCIDENT_TEST_STOP_AT="poll-read")) as a:
            wait_until(lambda: a.poll() is not None or process_state(a.pid) == "T")
            assert a.poll() is None, a.communicate()
            # Host b waits for the lock: a's lease runs out, b ends a's session and ticks.
            b = tick(tmp_path, db, "b", "--wait", "30", "run")
            assert b.code == 0, b.stderr
            assert "evicted stalled host a (session pid " in b.stderr
            assert "its tick lock lease ran out at " in b.stderr
            assert state_sql(db, "SELECT host FROM host_heartbeats WHERE host = 'b'")
            assert count(db, "incidents") == 1
            written = {t: count(db, t) for t in ("incidents", "alerts", "timeline", "actions")}
            # a wakes: its session is gone; it exits 75 with one line and writes nothing.
            a.send_signal(signal.SIGCONT)
            _, stderr = a.communicate(timeout=60)
        assert a.returncode == 75, stderr
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and "the state DB" in lines[0], stderr
        assert {t: count(db, t) for t in written} == written
        assert state_sql(db, "SELECT host FROM host_heartbeats WHERE host = 'a'") == []
        assert state_sql(db, "SELECT host FROM tick_lock") == [("b",)]
        # The lock is free again: the next tick on either host runs.
        assert tick(tmp_path, db, "a", "run").code == 0


def test_a_healthy_host_in_a_recovery_command_longer_than_the_lease_is_not_evicted(
    tmp_path: Path, pg_db: str
) -> None:
    db = pg_db
    with pipeline(tmp_path, command_sleep=3 * float(LEASE)):
        with reaped(start(tmp_path, db, "a", "run")) as a:
            wait_until(lambda: (tmp_path / "attempts.log").exists())
            # Past a's first lease while its command runs: its thread has renewed it.
            time.sleep(1.5 * float(LEASE))
            b = tick(tmp_path, db, "b", "run")
            assert b.code == 75, b.stderr
            assert "held by host a" in b.stderr and "evicted" not in b.stderr
            _, stderr = a.communicate(timeout=60)
        assert a.returncode == 0, stderr
        assert state_sql(db, "SELECT status FROM actions") == [("succeeded",)]


def test_a_lease_that_is_not_a_positive_number_of_seconds_is_one_line_and_exit_78(
    tmp_path: Path, pg_db: str
) -> None:
    (tmp_path / "incident.yaml").write_text("rules: []\n")
    for bad in ("soon", "0", "-5"):
        result = run_cli(
            ["-c", "incident.yaml", "--db", pg_db, "run"],
            cwd=tmp_path,
            env={"INCIDENT_HOSTNAME": "a", "INCIDENT_LOCK_LEASE": bad},
        )
        assert result.code == 78, result.stderr
        assert result.stderr.count("\n") == 1 and "INCIDENT_LOCK_LEASE" in result.stderr
        assert "Traceback" not in result.stderr
