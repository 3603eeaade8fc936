"""Benchmark: `incident detect-anomalies` over 100,000 synthetic-journey results.

Usage: python bench/bench_anomaly.py [--results 100000] [--journeys 20] [--runs 5] [--keep DIR]

Writes a journeys file (JSON lines, a result a minute per journey, a few journeys failing or
slowing down at the end), then runs `detect-anomalies` as cron would (a subprocess) and prints
the median wall time of --runs for:

- first tick: a fresh state DB, so the whole file is parsed, validated and stored, then analysed;
- next tick: the same DB with nothing new in the file, i.e. the analysis alone (plus start-up);
- start-up: `incident --version`, for scale;
- the analysis in-process: `anomaly.detect_anomalies` on that DB, without interpreter start-up.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def generate(path: Path, results: int, journeys: int, seed: int = 5) -> None:
    rng = random.Random(seed)
    per = results // journeys
    start = time.time() - per * 60 - 3600
    with path.open("w") as f:
        for minute in range(per):
            at = datetime.fromtimestamp(start + minute * 60, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            for j in range(journeys):
                tail = minute >= per - 12
                ok = not (tail and j % 7 == 0) and rng.random() > 0.01
                latency = rng.gauss(180, 20) * (3 if tail and j % 7 == 3 else 1)
                f.write(
                    json.dumps(
                        {
                            "journey": f"journey-{j:02d}",
                            "at": at,
                            "ok": ok,
                            "latency_ms": round(max(latency, 1.0), 1),
                        }
                    )
                    + "\n"
                )


def timed(cmd: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} exited {done.returncode}: {done.stderr.strip()}")
    return elapsed


def in_process(config: Path, db_path: Path, runs: int) -> list[float]:
    sys.path.insert(0, str(ROOT))
    from incident_cli.config.load import load_config
    from incident_cli.intake.anomaly import detect_anomalies
    from incident_cli.store.connection import open_db

    cfg = load_config(str(config), {}, must_exist=True)
    db = open_db(db_path)
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        detect_anomalies(db, cfg, time.time())
        out.append(time.perf_counter() - started)
    db.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=int, default=100_000)
    parser.add_argument("--journeys", type=int, default=20)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep", help="work in this directory and keep it")
    args = parser.parse_args()

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-anomaly-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        config = work / "incident.yaml"
        config.write_text("anomaly: {journeys: journeys.jsonl}\nchannels: {}\n")
        generate(work / "journeys.jsonl", args.results, args.journeys)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("INCIDENT_", "ANOMALY_"))}
        env["PYTHONPATH"] = str(ROOT)
        base = [sys.executable, "-m", "incident_cli", "--config", str(config)]

        def db_args(name: str) -> list[str]:
            return ["--db", str(work / name)]

        first = []
        for i in range(args.runs):
            name = f"first-{i}.db"
            first.append(timed([*base, *db_args(name), "detect-anomalies"], env))
        steady = [
            timed([*base, *db_args("first-0.db"), "detect-anomalies"], env)
            for _ in range(args.runs)
        ]
        startup = [timed([*base, "--version"], env) for _ in range(args.runs)]
        core = in_process(config, work / "first-0.db", args.runs)

        summary = subprocess.run(
            [*base, *db_args("first-0.db"), "list", "--json"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        incidents = json.loads(summary.stdout)
        print(f"{args.results} results across {args.journeys} journeys, median of {args.runs}:")
        print(f"  first tick (parse + store + analyse): {statistics.median(first):.3f}s")
        print(f"  next tick (analyse only):             {statistics.median(steady):.3f}s")
        print(f"  start-up (incident --version):        {statistics.median(startup):.3f}s")
        print(f"  analysis in-process (no start-up):    {statistics.median(core):.4f}s")
        print(f"  anomaly incidents open: {len(incidents)}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
