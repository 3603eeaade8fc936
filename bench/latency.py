"""End-to-end latency, from an exporter's flip to the message, next to Alertmanager's own.

Usage: python bench/latency.py [--flips N] [--every D]

A real Prometheus (scrape and evaluation every 1 s), a real Alertmanager, a local Slack-like
receiver and an exporter the bench flips between firing and clear N times (default 20).
`incident run --every D --for 60s-D` is started at each minute as a `* * * * *` crontab line
would, polling Prometheus and notifying the receiver as a Slack webhook. In the same run,
Alertmanager delivers the same alert straight to the same receiver twice: once through a route
with its default group_wait (30s), once with group_wait 0s (both with group_interval 1s, so a
resolved message is not held for the default 5 minutes).

For each flip (T0: the exporter flipped):
  T1 - T0  Prometheus reports the alert firing (or no longer reports it, for the resolved flip)
  T2 - T1  incident opened (reopened) / resolved it (the tick's timeline time)
  T3 - T1  the message was received: incident's, Alertmanager's (group_wait 30s and 0s)
Printed as p50 / p95 / max over the flips. Each flip waits a random part of --every first, so
the flips sample every phase of the tick schedule.
"""

from __future__ import annotations

import argparse
import math
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.binaries import (  # noqa: E402
    Process,
    ToyExporter,
    http_json,
    start_alertmanager,
    start_prometheus,
)
from tests.support.notify import Received, receiver  # noqa: E402

RULES = """
groups:
  - name: bench
    rules:
      - alert: Flip
        expr: toy_value{name="flip"} > 0
        labels: {severity: critical}
"""
WAIT = 90.0  # at most, for every message of one flip
PATHS = {"/slack": "incident", "/am-default": "AM group_wait 30s", "/am-zero": "AM group_wait 0s"}


def alertmanager_routes(url: str) -> dict[str, Any]:
    """Two routes to the same receiver: default group_wait (30s), and group_wait 0s."""
    hook = {"send_resolved": True}
    return {
        "route": {
            "receiver": "none",
            "routes": [
                {"receiver": "default", "group_interval": "1s", "continue": True},
                {"receiver": "zero", "group_wait": "0s", "group_interval": "1s"},
            ],
        },
        "receivers": [
            {"name": "none"},
            {"name": "default", "webhook_configs": [{**hook, "url": url + "/am-default"}]},
            {"name": "zero", "webhook_configs": [{**hook, "url": url + "/am-zero"}]},
        ],
    }


class Cron:
    """`* * * * * incident run --every D --for 60s-D`: started at each minute, as cron does."""

    def __init__(self, argv: list[str], workdir: Path) -> None:
        self.argv, self.workdir = argv, workdir
        self.stopping = threading.Event()
        self.procs: list[subprocess.Popen[bytes]] = []
        self.codes: list[int] = []
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        # The first run, mid-minute, ticks only until the minute (as if cron had started it).
        every = float(self.argv[self.argv.index("--every") + 1].rstrip("s"))
        left = 60 - every - time.time() % 60
        argv = [*self.argv[:-1], f"{max(left, every):.0f}s"]
        while not self.stopping.is_set():
            log = (self.workdir / "cron.log").open("ab")
            self.procs.append(subprocess.Popen(argv, cwd=self.workdir, stdout=log, stderr=log))
            argv = self.argv
            next_minute = (math.floor(time.time() / 60) + 1) * 60
            self.stopping.wait(next_minute - time.time())

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join()
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            self.codes.append(proc.wait(timeout=60))


def prometheus_firing(prom: Process) -> bool:
    alerts = http_json(prom.url + "/api/v1/alerts")["data"]["alerts"]
    return any(a["labels"].get("alertname") == "Flip" and a["state"] == "firing" for a in alerts)


def timeline_at(db: Path, kinds: tuple[str, ...], after: float) -> float | None:
    if not db.exists():
        return None
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        marks = ",".join("?" * len(kinds))
        row = conn.execute(
            f"SELECT min(at) FROM timeline WHERE kind IN ({marks}) AND at >= ?", (*kinds, after)
        ).fetchone()
    except sqlite3.OperationalError:
        return None
    finally:
        conn.close()
    return row[0] if row and row[0] is not None else None


def until(predicate: Any, timeout: float, step: float = 0.05) -> float | None:
    """The time at which `predicate()` was first seen true (None: not within timeout)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return time.time()
        time.sleep(step)
    return None


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flips", type=int, default=20, help="firing/clear cycles (default 20)")
    parser.add_argument("--every", default="5s", help="incident run --every (default 5s)")
    args = parser.parse_args()
    every = float(args.every.rstrip("s"))
    work = Path(tempfile.mkdtemp(prefix="incident-latency-"))
    got: list[tuple[float, str, str]] = []  # (when, path, firing|resolved)

    def record(request: Received) -> tuple[int, dict[str, str], bytes]:
        body = request.body if isinstance(request.body, dict) else {}
        if request.path == "/slack":
            kind = "resolved" if "RESOLVED" in str(body.get("text", "")) else "firing"
        else:
            kind = str(body.get("status", "firing"))
        got.append((time.time(), request.path, kind))
        return 200, {}, b"ok"

    exporter = ToyExporter()
    exporter.set("flip", 0)
    cron: Cron | None = None
    procs: list[Process] = []
    rows: dict[str, list[float]] = {}
    try:
        with receiver(record) as hook:
            am = start_alertmanager(work / "am", config=alertmanager_routes(hook.url))
            procs.append(am)
            prom = start_prometheus(work / "prom", RULES, [exporter.address], am)
            procs.append(prom)
            config = work / "incident.yaml"
            config.write_text(
                f"sources:\n  prometheus: {{type: prometheus, url: '{prom.url}'}}\n"
                f"channels:\n  slack: {{type: slack, webhook_url: '{hook.url}/slack',"
                " rate_limit: 'off'}\n"
                "defaults: {notify: [slack]}\n"
                "rules:\n  - {name: flip, match: {alertname: Flip}, severity: critical}\n"
                # Resolve as soon as the alert is gone, and never hold a flip as flapping.
                "incidents: {resolve_after: 0s, flapping: {changes: 1000}}\n"
            )
            db = work / "incident.db"
            argv = [sys.executable, "-m", "incident_cli", "-c", str(config), "--db", str(db)]
            argv += ["--quiet", "--wait", f"{every:g}", "run", "--every", f"{every:g}s"]
            argv += ["--for", f"{60 - every:g}s"]
            cron = Cron(argv, work)
            time.sleep(3)
            for flip in range(args.flips):
                for state in ("firing", "resolved"):
                    # At a random phase of the tick schedule, not always just after a tick.
                    time.sleep(random.uniform(0, every))
                    t0 = time.time()
                    exporter.set("flip", 1 if state == "firing" else 0)
                    want_firing = state == "firing"
                    t1 = until(lambda w=want_firing: prometheus_firing(prom) == w, WAIT)
                    kinds = ("opened", "reopened") if want_firing else ("resolved",)
                    until(lambda k=kinds, a=t0: timeline_at(db, k, a), WAIT)

                    def delivered(p: str, s: str = state, a: float = t0) -> float | None:
                        return next(
                            (w for w, path, k in got if path == p and k == s and w >= a), None
                        )

                    until(lambda d=delivered: all(d(p) for p in PATHS), WAIT)
                    if t1 is None:
                        print(f"flip {flip} {state}: Prometheus never showed it", file=sys.stderr)
                        continue
                    rows.setdefault(f"{state}: T1-T0 flip -> Prometheus", []).append(t1 - t0)
                    opened = timeline_at(db, kinds, t0)
                    if opened is not None:
                        rows.setdefault(f"{state}: T2-T1 -> incident", []).append(opened - t1)
                    for path, name in PATHS.items():
                        when = delivered(path)
                        if when is not None:
                            rows.setdefault(f"{state}: T3-T1 -> {name}", []).append(when - t1)
                    print(
                        f"flip {flip + 1}/{args.flips} {state}: "
                        + ", ".join(
                            f"{k.split(': ')[1]} {v[-1]:.1f}s"
                            for k, v in rows.items()
                            if k.startswith(state)
                        ),
                        file=sys.stderr,
                        flush=True,
                    )
    finally:
        if cron is not None:
            cron.stop()
        for proc in procs:
            proc.stop()
        exporter.close()
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"{args.flips} flips, incident run --every {every:g}s (started each minute by a cron"
        " emulation); Prometheus scrape and evaluation 1s"
    )
    print("| measure | n | p50 | p95 | max |\n| --- | ---: | ---: | ---: | ---: |")
    for name, values in rows.items():
        print(
            f"| {name} | {len(values)} | {percentile(values, 0.5):.1f}s"
            f" | {percentile(values, 0.95):.1f}s | {max(values):.1f}s |"
        )
    if cron is not None:
        print(f"incident run exit codes: {sorted(set(cron.codes))}")


if __name__ == "__main__":
    main()
