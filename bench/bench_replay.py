"""`incident replay`'s time and peak memory: 1,000 alert series over 1 day and over 7 days at
60 s ticks, served by a loopback server that answers query_range as Prometheus does.

Usage: python bench/bench_replay.py [--series N] [--days D,D] [--step S] [--runs N]

Every figure is a whole `incident replay` process (`python -m incident_cli`), timed from spawn
to exit, with its own peak RSS (GNU time when present). The history is the same for every run
(a fixed seed): each series fires in 3 to 8 episodes of 2 minutes to 3 hours spread over the
days, under 20 alert names and three severities, and the rule file has a storm limit, five rules
(two with recovery commands and budgets) and a webhook channel that is never called. Flat
memory shows as the same peak RSS for 1 day and for 7 days.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import incident_argv, run_timed, scratch_dir
from tests.support.query_range import AlertHistory, serve_history

T0 = 1_800_000_000.0
DAY = 86_400.0

RULES = """
sources:
  prometheus: {{type: prometheus, url: "{url}", timeout: 60s}}
incidents: {{resolve_after: 5m, reopen_within: 15m, storm: {{max_new_per_tick: 20}}}}
channels:
  hook: {{type: webhook, url: "http://127.0.0.1:9/never-called"}}
defaults: {{notify: [hook]}}
escalation: {{channels: [hook]}}
rules:
  - name: down
    match: {{alertname: "~Synthetic[0-4]"}}
    handler: service_down
    group_by: [alertname, instance]
    recovery: {{commands: [[systemctl, restart, "{{instance}}"]], max_attempts: 2, cooldown: 1h}}
  - name: disk
    match: {{alertname: "~Synthetic[5-9]"}}
    handler: service_down
    group_by: [alertname, instance]
    recovery: {{commands: [[cleanup-disk]], max_attempts: 1, cooldown: 6h}}
  - {{name: latency, match: {{alertname: "~Synthetic1[0-4]"}}, group_by: [alertname]}}
  - {{name: errors, match: {{alertname: "~Synthetic1[5-7]"}}}}
  - {{name: page, match: {{severity: critical}}, severity: critical}}
"""


def history(series: int, days: float, seed: int = 15) -> AlertHistory:
    rng = random.Random(seed)
    out = AlertHistory()
    span = days * DAY
    for i in range(series):
        labels = {
            "alertname": f"Synthetic{i % 20}",
            "instance": f"host-{i}.example:9100",
            "job": "node",
            "severity": ("critical", "warning", "info")[i % 3],
        }
        episodes = []
        for _ in range(rng.randint(3, 8)):
            start = T0 + rng.uniform(0, span)
            episodes.append((start, start + rng.uniform(120, 3 * 3600)))
        out.add(labels, *sorted(episodes))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--days", default="1,7")
    parser.add_argument("--step", default="60s")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    workdir = scratch_dir()
    rows = []
    for days in (float(d) for d in args.days.split(",")):
        alerts = history(args.series, days)
        with serve_history(alerts) as url:
            config = workdir / f"replay-{days:g}d.yaml"
            config.write_text(RULES.format(url=url))
            until = T0 + days * DAY
            argv = incident_argv(
                config,
                "replay",
                "--since",
                _rfc3339(T0),
                "--until",
                _rfc3339(until),
                "--step",
                args.step,
                "--format",
                "json",
            )
            timings = [run_timed(argv, cwd=workdir) for _ in range(args.runs)]
            out = workdir / "out.json"
            with out.open("w") as sink:
                subprocess.run(argv, stdout=sink, check=True, cwd=workdir)
            result = json.loads(out.read_text())
        rows.append(
            {
                "days": days,
                "series": args.series,
                "ticks": result["ticks"],
                "queries": len(alerts.requests) // (args.runs + 1),
                "incidents": len(result["incidents"]),
                "seconds": statistics.median(t.seconds for t in timings),
                "peak_rss_mb": max(t.peak_rss_mb for t in timings),
                "exit": max(t.code for t in timings),
            }
        )
    print(f"# {platform.python_version()} on {platform.machine()}, step {args.step}")
    print("| days | series | ticks | query_range calls | incidents | time | peak RSS |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['days']:g} | {r['series']} | {r['ticks']} | {r['queries']} | {r['incidents']}"
            f" | {r['seconds']:.1f}s | {r['peak_rss_mb']:.0f} MB |"
        )


def _rfc3339(epoch: float) -> str:
    from incident_cli.times import to_rfc3339

    return str(to_rfc3339(epoch))


if __name__ == "__main__":
    main()
