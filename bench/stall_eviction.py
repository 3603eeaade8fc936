"""A stalled tick lock holder on PostgreSQL, evicted: host a takes the lock and is stopped
(SIGSTOP, as a frozen VM) right after reading the alerts; host b runs `incident --wait 120 run`
at once. Prints, per round, the time from a's stop to the end of b's tick (b ends a's session
once a's lease runs out), and a's exit status when it is continued (SIGCONT) afterwards.

    .venv/bin/python bench/stall_eviction.py --rounds 3             # the default 30 s lease
    .venv/bin/python bench/stall_eviction.py --rounds 5 --lease 5   # INCIDENT_LOCK_LEASE=5
"""

from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.binaries import cli_env, process_state, wait_until  # noqa: E402
from tests.support.faults import pipeline  # noqa: E402
from tests.support.postgres import running_postgres  # noqa: E402


def host(workdir: Path, url: str, name: str, lease: float, *argv: str, **extra: str) -> Any:
    env = cli_env({"INCIDENT_HOSTNAME": name, "INCIDENT_LOCK_LEASE": str(lease), **extra})
    return subprocess.Popen(
        [sys.executable, "-m", "incident_cli", "-c", "incident.yaml", "--db", url, *argv],
        cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lease", type=float, default=30.0)
    args = parser.parse_args()
    times: list[float] = []
    with tempfile.TemporaryDirectory(prefix="incident-evict-") as tmp, running_postgres() as pg:
        workdir = Path(tmp)
        url = pg.url(pg.create_database())
        with pipeline(workdir):
            for n in range(args.rounds):
                a = host(workdir, url, "a", args.lease, "run", INCIDENT_TEST_STOP_AT="poll-read")
                wait_until(
                    lambda p=a: p.poll() is not None or process_state(p.pid) == "T", timeout=60
                )
                started = time.monotonic()
                b = host(workdir, url, "b", args.lease, "--wait", "120", "run")
                _, b_err = b.communicate(timeout=180)
                took = time.monotonic() - started
                a.send_signal(signal.SIGCONT)
                _, a_err = a.communicate(timeout=60)
                evicted = "evicted stalled host a" in b_err
                print(f"round {n + 1}: b exit {b.returncode}, evicted {evicted}, {took:.2f} s;"
                      f" a exit {a.returncode}: {a_err.strip()[:60]}")  # fmt: skip
                times.append(took)
    print(f"lease {args.lease:g} s, {len(times)} rounds: median {statistics.median(times):.2f} s,"
          f" max {max(times):.2f} s")  # fmt: skip


if __name__ == "__main__":
    main()
