"""The long fault run: `incident run` ticks as cron would against a real Alertmanager (alerts
fired and resolved on a schedule; a real Prometheus for its restarts), a webhook receiver, a
PagerDuty Events v2 mock, an SMTP server (aiosmtpd) and a recovery command that appends to a
file, under one kind of fault per run; after each run (its faults over, quiet ticks until it
settles) the invariants of tests/support/invariants.py are checked and counted.

    .venv/bin/python bench/faults.py --runs 35 --kills-per-run 6

Prints a table of fault x runs x kills x violations x duplicates, then where the random kills
fell. Time passes for the ticks on their own clock (faketime): a dead tick's leases (30 s a
notification, 70 s an action) and the retries' backoff run out on it, not on the wall clock.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.fault_runs import (
    DB_FAULTS,
    clock_jumps,
    db_fault,
    named,
    pipeline,
    prometheus_restart,
    random_moment,
    receivers,
)
from tests.support.binaries import start_alertmanager


def scenarios(args: argparse.Namespace) -> list[tuple[str, int, object]]:
    """(the table's row, runs, what one run does)."""
    kills, few = args.kills_per_run, max(args.runs // 10, 2)
    rows: list[tuple[str, int, object]] = [
        ("kill -9 at a named step", args.runs, lambda run, rng: named(run, rng, kills)),
        (
            "kill -9 at a random moment",
            args.random_runs or args.runs,
            lambda run, rng: random_moment(run, rng, kills),
        ),
        (
            "receivers: slow loris, 500s, timeouts, 429, SMTP 451",
            few,
            lambda run, rng: receivers(run, rng, 6),
        ),
        ("clock steps of an hour back and forth", few, lambda run, rng: clock_jumps(run, rng, 6)),
        (
            "Prometheus restarted while its alert fires",
            few,
            lambda run, rng: prometheus_restart(run, rng, 2),
        ),
    ]
    for fault in DB_FAULTS:
        rows.append((fault, few, lambda run, rng, fault=fault: db_fault(run, rng, fault)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=35, help="runs of each kind of kill")
    parser.add_argument("--random-runs", type=int, default=0, help="runs of random kills")
    parser.add_argument("--kills-per-run", type=int, default=6)
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument(
        "--only", default="", help="only the faults whose name contains one of these (a,b,...)"
    )
    args = parser.parse_args()
    rng = random.Random(args.seed)
    table, stages, problems = [], Counter[str](), []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="incident-faults-am-") as tmp:
        am = start_alertmanager(Path(tmp))
        try:
            for name, runs, one in scenarios(args):
                if not any(part in name for part in args.only.split(",")):
                    continue
                total = Counter[str]()
                for _ in range(runs):
                    with pipeline(am.url, rng) as run:
                        one(run, rng)  # type: ignore[operator]
                        verdict = run.verdict()
                    total["runs"] += 1
                    total["kills"] += sum(run.kills.values())
                    total["in flight"] += run.in_flight
                    total["late"] += run.late
                    total["violations"] += len(verdict.violations)
                    total["duplicates"] += verdict.duplicates
                    if name.startswith("kill -9 at a random"):
                        stages.update(k for k in run.kills.elements())
                    problems += [f"{name}: {v}" for v in verdict.violations]
                    for violation in verdict.violations:
                        print(f"# violation: {name}: {violation}", flush=True)
                table.append((name, total))
                print(f"# {name}: {dict(total)} ({time.monotonic() - started:.0f} s)", flush=True)
        finally:
            am.stop()
    print(
        "| fault | runs | kills | violations | duplicates | in flight at a kill | answered late |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, total in table:
        kills = total["kills"] if name.startswith("kill") else "-"
        print(
            f"| {name} | {total['runs']} | {kills} | {total['violations']} | {total['duplicates']}"
            f" | {total['in flight']} | {total['late']} |"
        )
    if stages:
        print("\nrandom kills by stage: " + ", ".join(f"{k} {v}" for k, v in stages.most_common()))
    for problem in problems:
        print("violation:", problem)
    print(f"\n{time.monotonic() - started:.0f} s in all (seed {args.seed})")


if __name__ == "__main__":
    main()
