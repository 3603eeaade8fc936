"""The long failover run: two hosts (INCIDENT_HOSTNAME a and b) run `incident run --wait` back to
back against one state DB, with a real Alertmanager (alerts fired and resolved on a schedule), a
webhook receiver, a PagerDuty mock and a recovery command; the host holding the tick lock is
killed with SIGKILL at random moments and restarted (tests/support/failover.py). Prints the
invariants' violations, every duplicate delivery, and the time from a kill to the end of the
next successful tick on the other host (for each kill not followed by another one before that).

    .venv/bin/python bench/failover.py --kills 100                      # SQLite, one shared file
    .venv/bin/python bench/failover.py --kills 100 --backend postgresql # a real PostgreSQL 15
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.failover import FailoverResult, run_failover  # noqa: E402


def one(backend: str, kills: int, seed: int, gap: tuple[float, float]) -> FailoverResult:
    with tempfile.TemporaryDirectory(prefix="incident-failover-") as tmp:
        workdir = Path(tmp)
        if backend == "sqlite":
            return run_failover(workdir, str(workdir / "state.db"), kills, seed, gap)
        from tests.support.postgres import running_postgres

        with running_postgres() as server:
            url = server.url(server.create_database())
            return run_failover(workdir, url, kills, seed, gap)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument(
        "--gap", type=float, nargs=2, default=(0.3, 1.5), metavar=("MIN", "MAX"),
        help="seconds between kills, drawn uniformly",
    )  # fmt: skip
    args = parser.parse_args()
    r = one(args.backend, args.kills, args.seed, tuple(args.gap))
    times = sorted(r.failover_seconds)
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))] if times else float("nan")
    print(
        "| backend | kills | incidents | ticks a/b | violations | duplicates"
        " | failovers timed | median | p95 | max | run |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    print(
        f"| {args.backend} | {r.kills} | {r.incidents} | {r.ticks.get('a', 0)}/{r.ticks.get('b', 0)}"
        f" | {len(r.violations)} | {len(r.duplicates)} | {len(times)}"
        f" | {statistics.median(times) if times else float('nan'):.2f} s | {p95:.2f} s"
        f" | {max(times) if times else float('nan'):.2f} s | {r.seconds:.0f} s |"
    )
    for line in r.violations:
        print(f"violation: {line}")
    for line in r.duplicates:
        print(f"duplicate: {line}")
    sys.exit(1 if r.violations else 0)


if __name__ == "__main__":
    main()
