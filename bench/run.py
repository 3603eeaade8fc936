"""`make bench`: every case of issue 8 in one table, each next to a floor measured in the same run.

Usage: python bench/run.py [--quick] [--runs N] [-n N] [--cap N] [--big N] [--keep DIR] [--only CASE,...]

Every figure is a whole `incident` process started as cron starts it (`python -m incident_cli`),
timed from spawn to exit, with its own peak RSS (wait4). The median of --runs runs is shown; the
floor is measured in the same run, alternating with the case, so both see the same machine.

Floors (what a hand-written script doing only the essential work costs):

- poll cases: a plain Python process that GETs the same payload with requests, parses it and
  inserts one row per alert into WAL SQLite with one executemany (bench/common.py FLOOR). The
  storm is measured twice: into a state DB whose first tick already ran (as in production),
  and on the first tick ever, which also creates the schema;
- idle tick: `python -c 'import sqlite3'` (interpreter start-up). The tick is the crontab line
  `cron print` writes (the console script with --db, so the parsed rule file is cached), and
  again with a secret written in the rule file (never cached);
- report over 10k: a plain Python process that opens the same DB with sqlite3, runs one
  aggregate query over the window's incidents (counts, mean MTTD/MTTA/MTTR, by severity and by
  alertname) and one over their notifications, and prints the JSON;
- notify: a plain Python process that POSTs the same number of JSON bodies, one at a time, on one
  requests session to the same receiver;
- report 720 over 1,000,000 incidents has no floor: its figure is absolute.

postgres: the storm poll, steady poll and report 24 again, on SQLite and on a PostgreSQL server
started for the bench, side by side (bench/bench_postgres.py); no floor, the SQLite column is
the reference.

--quick runs the same cases at a smaller size (a smoke test of the script, not figures to quote).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    PYTHON,
    AlertServer,
    Timing,
    floor,
    incident_argv,
    run_timed,
    synthetic_alerts,
)

# ----------------------------------------------------------------------------- floors

FLOOR_REPORT = r"""
import json, sqlite3, sys, time
db_path, hours = sys.argv[1], float(sys.argv[2])
until = time.time()
since = until - hours * 3600
conn = sqlite3.connect(db_path)
w = {"since": since, "until": until}
(opened, resolved, still_open, reopened, fp, mttd, mtta, mttr) = conn.execute(
    "SELECT count(*), sum(status = 'resolved'), sum(status != 'resolved'), sum(reopen_count > 0),"
    " sum(resolution = 'false_positive'), avg(max(opened_at - started_at, 0)),"
    " avg(max(acknowledged_at - opened_at, 0)),"
    " avg(CASE WHEN status = 'resolved' THEN resolved_at - started_at END)"
    " FROM incidents WHERE opened_at >= :since AND opened_at <= :until", w).fetchone()
by_severity = dict(conn.execute(
    "SELECT severity, count(*) FROM incidents WHERE opened_at >= :since AND opened_at <= :until"
    " GROUP BY severity", w).fetchall())
top = conn.execute(
    "SELECT json_extract(labels, '$.alertname') AS a, count(*) AS n FROM incidents"
    " WHERE opened_at >= :since AND opened_at <= :until GROUP BY a ORDER BY n DESC LIMIT 10",
    w).fetchall()
notes = dict(conn.execute(
    "SELECT n.status, count(*) FROM notifications n JOIN incidents i ON i.id = n.incident_id"
    " WHERE i.opened_at >= :since AND i.opened_at <= :until GROUP BY n.status", w).fetchall())
print(json.dumps({
    "incidents": {"opened": opened, "resolved": resolved, "open": still_open,
                  "reopened": reopened, "false_positive": fp},
    "mttd_seconds": mttd, "mtta_seconds": mtta, "mttr_seconds": mttr,
    "notifications": notes, "by_severity": by_severity,
    "top_alerts": [{"alertname": a, "incidents": n} for a, n in top],
}, indent=2))
"""

FLOOR_NOTIFY = r"""
import json, sys, requests
url, count = sys.argv[1], int(sys.argv[2])
with requests.Session() as session:
    for i in range(count):
        body = {
            "version": "1", "event": "firing", "status": "firing", "notification_id": i,
            "incident": {"id": i, "title": f"Synthetic{i % 50}: host-{i}.example:9100",
                         "severity": "warning", "labels": {"alertname": f"Synthetic{i % 50}",
                         "instance": f"host-{i}.example:9100", "job": "node"},
                         "annotations": {"summary": f"synthetic alert {i}"}},
            "text": f"[FIRING] Synthetic{i % 50}: host-{i}.example:9100",
        }
        response = session.post(url, json=body, timeout=10)
        response.raise_for_status()
"""


def floor_report(db: Path, hours: int) -> Timing:
    return run_timed([PYTHON, "-c", FLOOR_REPORT, str(db), str(hours)])


def floor_notify(url: str, count: int) -> Timing:
    return run_timed([PYTHON, "-c", FLOOR_NOTIFY, url, str(count)])


def floor_python() -> Timing:
    return run_timed([PYTHON, "-c", "import sqlite3"])


# ----------------------------------------------------------------------------- a receiver


class Receiver:
    """A webhook receiver on a loopback port: counts POSTs, answers 200, keeps connections."""

    def __init__(self) -> None:
        self.count = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: without TCP_NODELAY the body waits for
            # the client's delayed ACK (40 ms a message), which would swamp what is measured.
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    receiver.count += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# ----------------------------------------------------------------------------- cases


@dataclass
class Row:
    case: str
    n: int
    runs: list[Timing]
    floors: list[Timing]
    target: float | None = None  # ratio to the floor
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(r.seconds for r in self.runs)

    @property
    def floor(self) -> float | None:
        return statistics.median(r.seconds for r in self.floors) if self.floors else None

    @property
    def ratio(self) -> float | None:
        return self.median / self.floor if self.floor else None

    @property
    def rss(self) -> float:
        return max(r.peak_rss_mb for r in self.runs)

    @property
    def codes(self) -> set[int]:
        return {r.code for r in self.runs}


def poll_config(workdir: Path, url: str, max_new: int = 20, max_alerts: int | None = None) -> Path:
    config = workdir / "incident.yaml"
    cap = f", max_alerts: {max_alerts}" if max_alerts is not None else ""
    config.write_text(
        f"""
sources:
  prometheus: {{type: prometheus, url: "{url}", timeout: 60s{cap}}}
state: {{db: incident.db}}
incidents: {{storm: {{max_new_per_tick: {max_new}}}}}
channels:
  slack: {{type: slack, webhook_url: "http://127.0.0.1:9/unused"}}
defaults: {{notify: [slack]}}
"""
    )
    return config


def count(db: Path, sql: str) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute(sql).fetchone()[0])
    finally:
        conn.close()


def check(condition: bool, what: str) -> None:
    if not condition:
        sys.exit(f"bench: {what}")


def poll_cases(n: int, runs: int, work: Path, want: set[str]) -> list[Row]:
    """storm, steady, report over the storm's incidents, churn — on one alert server."""
    rows: list[Row] = []
    server = AlertServer()
    quiet = AlertServer()  # reachable, no alerts: the ticks before the storm
    try:
        server.set_alerts(synthetic_alerts(n))
        # Two storms: into a state DB whose first tick already ran (as in production), and
        # into a brand-new one, where the poll also creates the schema (every migration).
        storm = Row("storm poll (new alerts)", n, [], [], 4.0, "state DB in use")
        first = Row("storm poll, first tick ever", n, [], [], 4.0, "also creates the state DB")
        state: Path | None = None
        for i in range(runs if "storm" in want else 1):
            for row, fresh in ((storm, False), (first, True)):
                workdir = work / f"storm-{i}-{int(fresh)}"
                workdir.mkdir()
                if not fresh:
                    check(
                        run_timed(incident_argv(poll_config(workdir, quiet.url), "poll")).code == 0,
                        "the tick before the storm failed",
                    )
                config = poll_config(workdir, server.url)
                row.runs.append(run_timed(incident_argv(config, "poll")))
                row.floors.append(floor(server.url, workdir))
                check(
                    count(workdir / "incident.db", "SELECT count(*) FROM incidents") == n,
                    f"storm poll did not open {n} incidents",
                )
                if state is None and fresh:
                    state = workdir
                else:
                    shutil.rmtree(workdir)
        if "storm" in want:
            rows.extend((storm, first))
        assert state is not None
        config = state / "incident.yaml"
        db = state / "incident.db"

        if "steady" in want:
            steady = Row("steady poll (no change)", n, [], [], 2.0)
            for _ in range(runs):
                steady.runs.append(run_timed(incident_argv(config, "poll")))
                steady.floors.append(floor(server.url, state))
            rows.append(steady)

        if "report" in want:
            report = Row("report 24 --format json", n, [], [], 2.0)
            for _ in range(runs):
                report.runs.append(
                    run_timed(incident_argv(config, "report", "24", "--format", "json"))
                )
                report.floors.append(floor_report(db, 24))
            rows.append(report)

        if "churn" in want:
            churn = Row("churn poll (10% clear, 10% new)", n, [], [], None)
            for tick in range(1, runs + 1):
                server.set_alerts(synthetic_alerts(n, offset=tick * n // 10))
                churn.runs.append(run_timed(incident_argv(config, "poll")))
                churn.floors.append(floor(server.url, state))
            rows.append(churn)
    finally:
        server.close()
        quiet.close()
    return rows


def cap_cases(cap: int, runs: int, work: Path) -> list[Row]:
    """A source at its max_alerts (every alert is new: a storm of `cap` incidents), and one
    answering 4x that, which is refused: exit 75, nothing changes."""
    server = AlertServer()
    at = Row(f"storm poll at max_alerts ({cap:,})", cap, [], [], None, "opens every incident")
    over = Row(
        f"poll over max_alerts ({cap:,})", 4 * cap, [], [], None, "refused: exit 75, no change"
    )
    try:
        for i in range(runs):
            server.set_alerts(synthetic_alerts(cap))
            workdir = work / f"cap-{i}"
            workdir.mkdir()
            config = poll_config(workdir, server.url, max_alerts=cap)
            at.runs.append(run_timed(incident_argv(config, "poll")))
            at.floors.append(floor(server.url, workdir))
            db = workdir / "incident.db"
            check(count(db, "SELECT count(*) FROM incidents") == cap, "the cap storm fell short")
            shutil.rmtree(workdir)
            workdir.mkdir()
            server.set_alerts(synthetic_alerts(4 * cap))
            config = poll_config(workdir, server.url, max_alerts=cap)
            over.runs.append(run_timed(incident_argv(config, "poll")))
            check(count(db, "SELECT count(*) FROM incidents") == 0, "over the cap opened some")
            shutil.rmtree(workdir)
        return [at, over]
    finally:
        server.close()


def idle_case(runs: int, work: Path) -> list[Row]:
    """An idle tick as cron runs it: the `run` line `cron print` writes (the console script,
    -c, --db, --quiet), with the webhook's secret in the environment as the docs advise, so
    the parsed rule file comes from its cache. And the same tick with the secret written in
    the file (never cached: PyYAML is imported and the file parsed on every tick)."""
    server = AlertServer()  # reachable, zero alerts
    script = Path(PYTHON).with_name("incident")
    try:
        workdir = work / "idle"
        workdir.mkdir()
        literal = poll_config(workdir, server.url)
        config = workdir / "incident-env.yaml"
        config.write_text(
            literal.read_text().replace('"http://127.0.0.1:9/unused"', '"${BENCH_WEBHOOK_URL}"')
        )
        env = {"BENCH_WEBHOOK_URL": "http://127.0.0.1:9/unused"}
        db = workdir / "cron.db"
        cron = [str(script), "-c", str(config), "--db", str(db), "--quiet", "run"]
        if not script.exists():  # not installed as a console script: the module, as cron could
            cron = [PYTHON, "-m", "incident_cli", *cron[1:]]
        check(run_timed(cron, env).code == 0, "the first idle run failed")
        check((workdir / "cron.db-config.json").exists(), "the rule file was not cached")
        check(run_timed(incident_argv(literal, "run")).code == 0, "the first idle run failed")
        row = Row(
            "idle tick: the crontab line of `cron print`",
            0,
            [],
            [],
            4.0,
            "floor: python -c 'import sqlite3'",
        )
        uncached = Row(
            "idle tick: a secret in the rule file (not cached)",
            0,
            [],
            [],
            None,
            "python -m incident_cli -c FILE run",
        )
        for _ in range(runs):
            row.runs.append(run_timed(cron, env))
            row.floors.append(floor_python())
            uncached.runs.append(run_timed(incident_argv(literal, "run")))
            uncached.floors.append(floor_python())
        for name in ("cron.db", "incident.db"):
            check(
                count(workdir / name, "SELECT count(*) FROM notifications") == 0,
                "the idle tick queued something",
            )
        return [row, uncached]
    finally:
        server.close()


def notify_case(messages: int, runs: int, work: Path) -> Row:
    """`notify` draining `messages` queued firing messages to a local webhook receiver."""
    receiver = Receiver()
    server = AlertServer()
    try:
        server.set_alerts(synthetic_alerts(messages))
        seed = work / "notify-seed"
        seed.mkdir()
        config = seed / "incident.yaml"
        config.write_text(
            f"""
sources:
  prometheus: {{type: prometheus, url: "{server.url}", timeout: 60s}}
state: {{db: incident.db}}
incidents: {{storm: {{max_new_per_tick: {messages + 1}}}}}
channels:
  hook: {{type: webhook, url: "{receiver.url}", rate_limit: "off"}}
defaults: {{notify: [hook]}}
"""
        )
        check(run_timed(incident_argv(config, "poll")).code == 0, "the notify seed poll failed")
        queued = count(seed / "incident.db", "SELECT count(*) FROM notifications")
        check(queued == messages, f"expected {messages} queued notifications, found {queued}")
        row = Row("notify (drain the outbox)", messages, [], [], None, "webhook, rate_limit off")
        for i in range(runs):
            workdir = work / f"notify-{i}"
            shutil.copytree(seed, workdir)
            config_i = workdir / "incident.yaml"
            before = receiver.count
            row.runs.append(run_timed(incident_argv(config_i, "notify")))
            check(receiver.count - before == messages, "notify did not deliver every message")
            sent = count(
                workdir / "incident.db", "SELECT count(*) FROM notifications WHERE status = 'sent'"
            )
            check(sent == messages, f"notify marked {sent} of {messages} sent")
            row.floors.append(floor_notify(receiver.url, messages))
            shutil.rmtree(workdir)
        return row
    finally:
        server.close()
        receiver.close()


def big_report_case(size: int, runs: int, keep: Path) -> Row:
    from bench.bench_report import generate

    db = keep / f"report-{size}.db"
    note = ""
    if not db.exists():
        started = time.perf_counter()
        tmp = keep / f"report-{size}.tmp.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{tmp}{suffix}").unlink(missing_ok=True)
        # Spread over the last 30 days before now; the DB is kept, so later runs see the
        # window slide a little (minutes), which does not change the work.
        generate(tmp, size, time.time())
        tmp.rename(db)
        note = f"generated in {time.perf_counter() - started:.0f}s"
    row = Row("report 720 (table)", size, [], [], None, note or "absolute time")
    argv = [PYTHON, "-m", "incident_cli", "--db", str(db), "report", "720"]
    for _ in range(runs):
        row.runs.append(run_timed(argv))
    return row


# ----------------------------------------------------------------------------- output


def machine() -> str:
    model = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"machine: {os.cpu_count()} CPUs ({model}), Python {platform.python_version()},"
        f" SQLite {sqlite3.sqlite_version}, {platform.system()} {platform.release()}"
    )


def table(rows: list[Row], runs: int) -> str:
    head = (
        "| case | N | median | floor | ratio | target | peak RSS | notes |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    )
    lines = list(head)
    for r in rows:
        floor_s = f"{r.floor:.3f}s" if r.floor is not None else "—"
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None else "—"
        target = f"≤ {r.target:g}x" if r.target is not None else "—"
        if r.target is not None and r.ratio is not None:
            target += " ✓" if r.ratio <= r.target else " ✗"
        rss = f"{r.rss:.0f} MB" + (" ✓" if r.rss <= 100 else " ✗")
        notes = r.note
        if r.codes - {0}:
            notes = (notes + "; " if notes else "") + f"exit {sorted(r.codes)}"
        lines.append(
            f"| {r.case} | {r.n:,} | {r.median:.3f}s | {floor_s} | {ratio} | {target} | {rss}"
            f" | {notes} |"
        )
    lines.append(f"\nmedian of {runs} runs; peak RSS is the largest of the runs (target ≤ 100 MB)")
    return "\n".join(lines)


CASES = ("storm", "steady", "report", "churn", "cap", "idle", "notify", "big", "postgres")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    parser.add_argument("-n", type=int, help="alerts per poll (default 10,000; quick 1,000)")
    parser.add_argument("--runs", type=int, help="runs per case (default 5; quick 2)")
    parser.add_argument("--messages", type=int, help="notifications to drain (default 1,000)")
    parser.add_argument("--cap", type=int, help="max_alerts for the cap case (default 50,000)")
    parser.add_argument("--big", type=int, help="incidents for report 720 (default 1,000,000)")
    parser.add_argument("--keep", help="keep the big report DB here (reused when present)")
    parser.add_argument("--json", help="also write the figures to this file as JSON")
    parser.add_argument("--only", help=f"comma-separated cases out of {','.join(CASES)}")
    args = parser.parse_args()
    n = args.n or (1_000 if args.quick else 10_000)
    runs = args.runs or (2 if args.quick else 5)
    messages = args.messages or (100 if args.quick else 1_000)
    big = args.big or (50_000 if args.quick else 1_000_000)
    cap = args.cap or (5_000 if args.quick else 50_000)
    want = set(args.only.split(",")) if args.only else set(CASES)
    unknown = want - set(CASES)
    if unknown:
        parser.error(f"unknown case(s): {', '.join(sorted(unknown))}")

    print(machine(), flush=True)
    # As a pip-installed package has them: without .pyc files (PYTHONDONTWRITEBYTECODE=1 in
    # some environments) every measured process would compile the package first.
    subprocess.run([PYTHON, "-m", "compileall", "-q", str(ROOT / "incident_cli")], check=True)
    work = Path(tempfile.mkdtemp(prefix="incident-bench-"))
    keep = Path(args.keep) if args.keep else work
    keep.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    steps: list[tuple[str, Callable[[], list[Row]]]] = []
    if want & {"storm", "steady", "report", "churn"}:
        steps.append(("poll cases", lambda: poll_cases(n, runs, work, want)))
    if "cap" in want:
        steps.append(("max_alerts", lambda: cap_cases(cap, runs, work)))
    if "idle" in want:
        steps.append(("idle tick", lambda: idle_case(runs, work)))
    if "notify" in want:
        steps.append(("notify", lambda: [notify_case(messages, runs, work)]))
    if "big" in want:
        steps.append(("report over the big DB", lambda: [big_report_case(big, runs, keep)]))
    backends: list[str] = []
    if "postgres" in want:
        from bench.bench_postgres import postgres_cases
        from bench.bench_postgres import table as backend_table

        def postgres_step() -> list[Row]:
            backends.append(backend_table(postgres_cases(n, runs, work), n, runs))
            return []

        steps.append(("SQLite and PostgreSQL", postgres_step))
    started = time.perf_counter()
    try:
        for name, step in steps:
            t0 = time.perf_counter()
            print(f"... {name}", end="", flush=True, file=sys.stderr)
            rows.extend(step())
            print(f" {time.perf_counter() - t0:.0f}s", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(table(rows, runs))
    for text in backends:
        print(f"\n{text}")
    print(f"whole bench: {time.perf_counter() - started:.0f}s")
    if args.quick:
        print("(--quick: smaller sizes, a smoke test of the script; not figures to quote)")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                [
                    {
                        "case": r.case,
                        "n": r.n,
                        "median": r.median,
                        "floor": r.floor,
                        "rss_mb": r.rss,
                    }
                    for r in rows
                ],
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
