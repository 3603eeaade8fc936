"""Shared pieces of the benchmarks: a synthetic alert server, process timing with peak RSS, and
the floor every case is compared with."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def synthetic_alerts(n: int, offset: int = 0) -> list[dict[str, Any]]:
    """n distinct firing alerts in Prometheus `/api/v1/alerts` shape."""
    return [
        {
            "labels": {
                "alertname": f"Synthetic{(i + offset) % 50}",
                "instance": f"host-{i + offset}.example:9100",
                "job": "node",
                "severity": ("critical", "warning", "info")[(i + offset) % 3],
            },
            "annotations": {"summary": f"synthetic alert {i + offset}"},
            "state": "firing",
            "activeAt": "2026-11-28T20:00:00.000000000Z",
            "value": "1e+00",
        }
        for i in range(n)
    ]


class AlertServer:
    """Serves whatever body is set, at `/api/v1/alerts`, on a loopback port."""

    def __init__(self) -> None:
        self.body = b'{"status":"success","data":{"alerts":[]}}'
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                body = server.body
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def set_alerts(self, alerts: list[dict[str, Any]]) -> None:
        self.body = json.dumps({"status": "success", "data": {"alerts": alerts}}).encode()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@dataclass
class Timing:
    seconds: float
    peak_rss_mb: float
    code: int


# GNU time, when present, reports the peak RSS of the command alone. wait4's ru_maxrss also
# counts the bench process's own high-water mark (Linux keeps it across the child's exec), so a
# bench that built a big payload would make every child look as big.
GNU_TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None


def run_timed(
    argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
) -> Timing:
    """Wall time and this child's own peak RSS of one whole process, as cron runs it."""
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
        wrapped = [GNU_TIME, "-q", "-f", "%M", "-o", rss.name, *argv] if GNU_TIME else argv
        started = time.perf_counter()
        proc = subprocess.Popen(
            wrapped,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        assert proc.stderr is not None
        err = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - started
        peak_kb = usage.ru_maxrss
        if GNU_TIME:
            text = rss.read().strip()
            peak_kb = int(text.splitlines()[-1]) if text else peak_kb
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0, 75):
        sys.stderr.write(err.decode(errors="replace")[-2000:])
    return Timing(elapsed, peak_kb / 1024, proc.returncode)


FLOOR = r"""
import json, sqlite3, sys, requests
url, db_path = sys.argv[1], sys.argv[2]
alerts = requests.get(url + "/api/v1/alerts", timeout=30).json()["data"]["alerts"]
conn = sqlite3.connect(db_path)
conn.execute("PRAGMA journal_mode=WAL")
conn.execute("CREATE TABLE IF NOT EXISTS a (labels TEXT, annotations TEXT, state TEXT, active TEXT)")
with conn:
    conn.executemany(
        "INSERT INTO a VALUES (?, ?, ?, ?)",
        [(json.dumps(x["labels"]), json.dumps(x["annotations"]), x["state"], x["activeAt"]) for x in alerts],
    )
"""


def floor(url: str, workdir: Path) -> Timing:
    """A plain Python process: fetch with requests, parse, one executemany into WAL SQLite."""
    db = workdir / f"floor-{time.monotonic_ns()}.db"
    return run_timed([PYTHON, "-c", FLOOR, url, str(db)])


def median_of(runs: list[Timing]) -> Timing:
    return Timing(
        statistics.median(r.seconds for r in runs),
        max(r.peak_rss_mb for r in runs),
        max(r.code for r in runs),
    )


def incident_argv(config: Path, *args: str) -> list[str]:
    return [PYTHON, "-m", "incident_cli", "-c", str(config), *args]


def scratch_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="incident-bench-"))
