"""The long fault run: `incident run` ticks as cron would against a real Alertmanager (alerts
fired and resolved on a schedule), a webhook receiver and a recovery command that appends to a
file, killed with SIGKILL at the named steps and at random moments; after each run (its faults
over, a few quiet ticks) the invariants are checked and counted.

    .venv/bin/python bench/faults.py --runs 50 --kills-per-run 4

Prints a table of fault x runs x kills x violations x duplicates. A dead tick's leases are moved
into the past instead of waited for (30 s for a notification, the command's timeout + 60 s for
an action): what is measured is what the next tick does with them, not the clock.
"""

from __future__ import annotations

import argparse
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.binaries import cli_env, start_alertmanager  # noqa: E402
from tests.support.faults import age_leases, pipeline_config, post_alert  # noqa: E402
from tests.support.notify import receiver  # noqa: E402

STEPS = ("poll-read", "notify-claimed", "sent", "action-claimed", "command-started")


def tick(workdir: Path, crash_at: str | None = None, kill_after: float | None = None) -> int:
    argv = [sys.executable, "-m", "incident_cli", "-c", "incident.yaml", "--db", "state.db", "run"]
    env = cli_env({"INCIDENT_TEST_CRASH_AT": crash_at} if crash_at else None)
    proc = subprocess.Popen(
        argv, cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    if kill_after is not None:
        try:
            return proc.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
    return proc.wait(timeout=120)


def one_run(am_url: str, n: int, fault: str, kills: int, rng: random.Random) -> dict[str, int]:
    """One incident's life under `kills` faults; returns kills, duplicates and violations."""
    out = Counter({"kills": 0, "duplicates": 0, "violations": 0, "sent_kills": 0})
    service = f"svc{n}-{rng.randrange(10**9)}"
    with tempfile.TemporaryDirectory(prefix="incident-faults-") as tmp, receiver() as hook:
        workdir = Path(tmp)
        (workdir / "incident.yaml").write_text(
            pipeline_config(am_url, hook.url, service, command_sleep=0.2)
        )
        db = workdir / "state.db"
        post_alert(am_url, service)
        for k in range(kills):
            if k == kills // 2:
                post_alert(am_url, service, resolved=True)  # the schedule: resolved mid-run
            if fault == "named":
                step = rng.choice(STEPS)
                code = tick(workdir, crash_at=step)
                if step == "sent" and code == -9:
                    out["sent_kills"] += 1
            else:
                code = tick(workdir, kill_after=rng.uniform(0.05, 0.7))
            out["kills"] += code == -9
            age_leases(db)
        for _ in range(20):  # quiet ticks until everything settled
            tick(workdir)
            conn = sqlite3.connect(db)
            settled = conn.execute(
                "SELECT (SELECT count(*) FROM incidents WHERE status != 'resolved')"
                " + (SELECT count(*) FROM notifications WHERE status = 'pending')"
            ).fetchone()[0]
            conn.close()
            if settled == 0 and db.exists():
                break
            age_leases(db)
            time.sleep(1.1)
        events = Counter(
            r.body["event"] for r in hook.received if isinstance(r.body, dict) and "event" in r.body
        )
        conn = sqlite3.connect(db)
        incidents = conn.execute("SELECT status FROM incidents").fetchall()
        stuck = conn.execute(
            "SELECT (SELECT count(*) FROM actions WHERE status = 'running')"
            " + (SELECT count(*) FROM notifications WHERE lease_until IS NOT NULL)"
        ).fetchone()[0]
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        conn.close()
        log = workdir / "attempts.log"
        attempts = log.read_text().split() if log.exists() else []
        opened = len(incidents)
        problems = [
            events["firing"] < opened,
            events["resolved"] < opened,
            any(status != "resolved" for (status,) in incidents),
            len(attempts) != len(set(attempts)),
            stuck != 0,
            integrity != "ok",
        ]
        duplicates = max(events["firing"] - opened, 0) + max(events["resolved"] - opened, 0)
        out["duplicates"] += duplicates
        # A duplicate is explained only by a kill between a send and its mark.
        unexplained = fault == "named" and duplicates > out["sent_kills"]
        out["violations"] += sum(problems) + int(unexplained)
    return dict(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50, help="runs per fault kind")
    parser.add_argument("--kills-per-run", type=int, default=4)
    parser.add_argument("--seed", type=int, default=17)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="incident-faults-am-") as tmp:
        am = start_alertmanager(Path(tmp))
        try:
            rows = []
            for fault in ("named", "random"):
                total = Counter({"runs": 0, "kills": 0, "duplicates": 0, "violations": 0})
                for n in range(args.runs):
                    got = one_run(am.url, n, fault, args.kills_per_run, rng)
                    total["runs"] += 1
                    for key in ("kills", "duplicates", "violations"):
                        total[key] += got[key]
                rows.append((fault, total))
        finally:
            am.stop()
    print("| fault | runs | kills | violations | duplicates |")
    print("| --- | --- | --- | --- | --- |")
    for fault, total in rows:
        name = "kill -9 at a named step" if fault == "named" else "kill -9 at a random moment"
        print(
            f"| {name} | {total['runs']} | {total['kills']} | {total['violations']}"
            f" | {total['duplicates']} |"
        )


if __name__ == "__main__":
    main()
