"""Benchmark: `incident report 720 --format json` (and `metrics`) over 10k and 1M incidents.

Usage: python bench/bench_report.py [--sizes 10000,1000000] [--runs 3] [--keep DIR]

Generates a state DB per size with executemany (incidents spread over the last 30 days,
with command actions, notifications and some escalation/flapping timeline events), then
runs the commands as cron would (a subprocess) and prints the median wall time of --runs.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from incident_cli.store.connection import open_db

ALERTS = [
    ("BackendServiceDown", "critical"),
    ("EphemerisServiceDown", "critical"),
    ("ServiceAvailabilityBreach", "error"),
    ("ErrorRateSLOBreach", "error"),
    ("LatencySLOBreach_p95", "warning"),
    ("LatencySLOBreach_p99", "warning"),
    ("AuthenticationFailureSpike", "critical"),
    ("DiskFilling", "warning"),
    ("CertificateExpiring", "info"),
    ("JourneyAnomaly", "warning"),
]
CHANNELS = ("slack", "pagerduty", "email")


def generate(path: Path, count: int, now: float, seed: int = 6) -> None:
    rng = random.Random(seed)
    db = open_db(path)
    conn = db.conn
    conn.execute("PRAGMA synchronous = OFF")
    span = 30 * 86400.0
    conn.execute("BEGIN")
    batch: list[tuple[object, ...]] = []
    actions: list[tuple[object, ...]] = []
    notes: list[tuple[object, ...]] = []
    events: list[tuple[object, ...]] = []

    def flush() -> None:
        conn.executemany(
            "INSERT INTO incidents (id, key, title, status, severity, rule, handler, source,"
            " labels, annotations, started_at, opened_at, acknowledged_at, acknowledged_by,"
            " resolved_at, resolution, flapping, reopen_count, escalated_at, updated_at)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            batch,
        )
        conn.executemany(
            "INSERT INTO actions (incident_id, kind, status, attempts, command, planned_at,"
            " due_at, started_at, finished_at, exit_code) VALUES (?,?,?,?,?,?,?,?,?,?)",
            actions,
        )
        conn.executemany(
            "INSERT INTO notifications (incident_id, channel, event, status, attempts, message,"
            " created_at, next_attempt_at, sent_at) VALUES (?,?,?,?,?,?,?,?,?)",
            notes,
        )
        conn.executemany(
            "INSERT INTO timeline (incident_id, at, kind, actor, message) VALUES (?,?,?,?,?)",
            events,
        )
        for rows in (batch, actions, notes, events):
            rows.clear()

    for i in range(1, count + 1):
        alertname, severity = ALERTS[rng.randrange(len(ALERTS))]
        service = f"svc{rng.randrange(50)}"
        opened = now - span * (1 - i / (count + 1))
        started = opened - rng.uniform(5, 120)
        acked = opened + rng.uniform(30, 900) if rng.random() < 0.6 else None
        resolved = opened + rng.uniform(60, 7200) if rng.random() < 0.97 else None
        if resolved is not None and resolved > now:
            resolved = None
        status = "resolved" if resolved else ("acknowledged" if acked else "open")
        resolution = None
        if resolved:
            resolution = rng.choice(("auto", "auto", "recovered", "manual", "false_positive"))
        escalated = opened + 600 if rng.random() < 0.05 else None
        labels = json.dumps({"alertname": alertname, "service": service})
        batch.append(
            (
                i,
                f"r:alertname={alertname},service={service}",
                f"{alertname}: {service}",
                status,
                severity,
                "r",
                "default",
                "prometheus",
                labels,
                "{}",
                started,
                opened,
                acked,
                "bench" if acked else None,
                resolved,
                resolution,
                int(rng.random() < 0.01),
                rng.choice((0, 0, 0, 0, 1, 2)),
                escalated,
                opened,
            )
        )
        if rng.random() < 0.3:
            ok = rng.random() < 0.8
            actions.append(
                (
                    i,
                    "command",
                    "succeeded" if ok else "failed",
                    1,
                    '["systemctl","restart","x"]',
                    opened,
                    opened,
                    opened + 1,
                    opened + 3,
                    0 if ok else 1,
                )
            )
        for channel in CHANNELS[: rng.randrange(1, 3)]:
            state = "sent" if rng.random() < 0.98 else rng.choice(("dead", "pending"))
            sent = opened + rng.uniform(0.2, 4) if state == "sent" else None
            notes.append((i, channel, "firing", state, 1, "{}", opened, opened, sent))
        if escalated:
            events.append((i, escalated, "escalated", "incident", "escalated"))
        if len(batch) >= 20000:
            flush()
    flush()
    conn.execute("COMMIT")
    db.close()


def timed(argv: list[str], runs: int) -> tuple[float, str]:
    times = []
    out = ""
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, text=True, check=True)
        times.append(time.perf_counter() - start)
        out = proc.stdout
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10000,1000000")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", help="directory to keep the generated DBs in")
    args = parser.parse_args()
    workdir = Path(args.keep or tempfile.mkdtemp(prefix="incident-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for size in (int(s) for s in args.sizes.split(",")):
        path = workdir / f"bench-{size}.db"
        if not path.exists():
            start = time.perf_counter()
            generate(path, size, now)
            print(f"generated {size:,} incidents in {time.perf_counter() - start:.1f}s ({path})")
        base = [sys.executable, "-m", "incident_cli", "--db", str(path)]
        elapsed, out = timed([*base, "report", "720", "--format", "json"], args.runs)
        opened = json.loads(out)["incidents"]["opened"]
        print(f"report 720 --format json over {opened:,} incidents: {elapsed:.2f}s (median)")
        elapsed, _ = timed([*base, "report", "24"], args.runs)
        print(f"report 24 (table) over {size:,} incidents in the DB: {elapsed:.2f}s (median)")
        elapsed, _ = timed([*base, "metrics"], args.runs)
        print(f"metrics over {size:,} incidents: {elapsed:.2f}s (median)")


if __name__ == "__main__":
    main()
