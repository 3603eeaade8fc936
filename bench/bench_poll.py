"""Poll benchmarks: a storm of new alerts, a steady state, and churn — next to the floor."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from bench.common import (
    AlertServer,
    Timing,
    floor,
    incident_argv,
    median_of,
    run_timed,
    scratch_dir,
    synthetic_alerts,
)


def write_config(workdir: Path, url: str) -> Path:
    config = workdir / "incident.yaml"
    config.write_text(
        f"""
sources:
  prometheus: {{type: prometheus, url: "{url}", timeout: 60s}}
state: {{db: incident.db}}
incidents: {{storm: {{max_new_per_tick: 20}}}}
channels:
  slack: {{type: slack, webhook_url: "http://127.0.0.1:9/unused"}}
defaults: {{notify: [slack]}}
"""
    )
    return config


def run(n: int, runs: int) -> dict[str, tuple[Timing, Timing]]:
    server = AlertServer()
    results: dict[str, tuple[Timing, Timing]] = {}
    try:
        alerts = synthetic_alerts(n)
        server.set_alerts(alerts)
        storms, floors = [], []
        for _ in range(runs):
            workdir = scratch_dir()
            config = write_config(workdir, server.url)
            storms.append(run_timed(incident_argv(config, "poll")))
            floors.append(floor(server.url, workdir))
            shutil.rmtree(workdir)
        results["storm poll"] = (median_of(storms), median_of(floors))

        workdir = scratch_dir()
        config = write_config(workdir, server.url)
        run_timed(incident_argv(config, "poll"))
        steady = [run_timed(incident_argv(config, "poll")) for _ in range(runs)]
        results["steady poll"] = (
            median_of(steady),
            median_of([floor(server.url, workdir) for _ in range(runs)]),
        )

        churn, churn_floor = [], []
        for tick in range(1, runs + 1):
            server.set_alerts(synthetic_alerts(n, offset=tick * n // 10))
            churn.append(run_timed(incident_argv(config, "poll")))
            churn_floor.append(floor(server.url, workdir))
        results["churn poll"] = (median_of(churn), median_of(churn_floor))
        shutil.rmtree(workdir)
    finally:
        server.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    for case, (timing, base) in run(args.n, args.runs).items():
        print(
            f"{case:12} {timing.seconds:7.3f}s  floor {base.seconds:6.3f}s  ratio {timing.seconds / base.seconds:5.2f}x  rss {timing.peak_rss_mb:6.1f} MB  exit {timing.code}"
        )


if __name__ == "__main__":
    main()
