"""`make demo`: the real thing on loopback, start to finish, in under two minutes.

Starts Prometheus and Alertmanager (Debian's binaries) with examples/prometheus/alert_rules.yml,
a toy backend they scrape, and a local receiver standing in for Slack and a webhook. Then it
breaks the backend and runs `incident` ticks exactly as cron would, until the incident opens,
is fixed and resolves, prints the report, and stops everything it started.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.binaries import (  # noqa: E402
    free_port,
    run_cli,
    start_alertmanager,
    start_prometheus,
)

BACKEND = REPO / "examples" / "toy_backend.py"
TICK = ["-v", "run"]


class Receiver:
    """A local stand-in for Slack and a webhook receiver: records what they receive, printed
    under the tick that sent it (`flush`)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[dict[str, Any]] = []
        self.lines: list[str] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    payload = json.loads(body or b"{}")
                except ValueError:
                    payload = {"raw": body.decode("utf-8", "replace")}
                with receiver.lock:
                    receiver.received.append({"path": self.path, "payload": payload})
                    receiver.lines.append(
                        f"    ↳ notification to {self.path}: {summarise(payload)}"
                    )
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def flush(self) -> None:
        """Print what arrived since the last flush (the tick that sent it is done by now)."""
        with self.lock:
            lines, self.lines = self.lines, []
        for line in lines:
            print(line, flush=True)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def summarise(payload: dict[str, Any]) -> str:
    if "text" in payload:
        return str(payload["text"]).splitlines()[0][:100]
    event = payload.get("event")
    incident = payload.get("incident") or {}
    return f"{event} #{incident.get('id')} {incident.get('title', '')}"[:100]


def require_binaries() -> None:
    missing = [b for b in ("prometheus", "prometheus-alertmanager") if not shutil.which(b)]
    if not missing:
        return
    if shutil.which("apt-get"):
        print(f"installing {', '.join(missing)} from Debian's packages …", flush=True)
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "prometheus", "prometheus-alertmanager"],
            check=True,
        )
        return
    sys.exit(
        "make demo needs the prometheus and prometheus-alertmanager binaries on PATH "
        "(Debian/Ubuntu: apt-get install prometheus prometheus-alertmanager)"
    )


def write_config(workdir: Path, prom_url: str, am_url: str, backend_port: int, hook: str) -> Path:
    pidfile = workdir / "backend.pid"
    config = {
        "sources": {
            "prometheus": {"type": "prometheus", "url": prom_url, "timeout": "5s"},
            "alertmanager": {"type": "alertmanager", "url": am_url, "timeout": "5s"},
        },
        "state": {"db": "incident.db"},
        "incidents": {"resolve_after": "3s", "reopen_within": "1m"},
        "defaults": {"notify": ["slack", "hook"]},
        "rules": [
            {
                "name": "backend-down",
                "match": {"alertname": "BackendServiceDown"},
                "handler": "service_down",
                "severity": "critical",
                "group_by": ["alertname", "service"],
                "runbook": "https://runbooks.example.com/backend-down",
                "recovery": {
                    "commands": [
                        [
                            sys.executable,
                            str(BACKEND),
                            "start",
                            "--port",
                            str(backend_port),
                            "--pidfile",
                            str(pidfile),
                        ]
                    ],
                    "timeout": "20s",
                    "verify": {"http": f"http://127.0.0.1:{backend_port}/health", "within": "1m"},
                    "max_attempts": 3,
                    "backoff": "2s",
                    "cooldown": "10m",
                },
            }
        ],
        "channels": {
            "slack": {"type": "slack", "webhook_url": f"{hook}/slack"},
            "hook": {"type": "webhook", "url": f"{hook}/webhook"},
        },
    }
    path = workdir / "incident.yaml"
    path.write_text(json.dumps(config, indent=2))
    return path


def incident(config: Path, workdir: Path, *args: str) -> str:
    result = run_cli(["-c", str(config), *args], cwd=workdir)
    return (result.stdout + result.stderr).rstrip()


def tick(config: Path, workdir: Path, receiver: Receiver, label: str) -> None:
    """One `incident run` as cron runs it, then the notifications it sent."""
    output = incident(config, workdir, *TICK) or "(silent)"
    print(f"{label}:", output, flush=True)
    receiver.flush()


def main() -> int:
    require_binaries()
    started = time.monotonic()
    print(
        "starting Prometheus, Alertmanager, a toy backend and a stand-in for Slack on loopback …",
        flush=True,
    )
    workdir = Path(tempfile.mkdtemp(prefix="incident-demo-"))
    backend_port = free_port()
    pidfile = workdir / "backend.pid"
    receiver = Receiver()
    am = prom = None
    try:
        subprocess.run(
            [sys.executable, BACKEND, "start", "--port", str(backend_port), "--pidfile", pidfile],
            check=True,
        )
        am = start_alertmanager(workdir / "am")
        rules = (REPO / "examples" / "prometheus" / "alert_rules.yml").read_text()
        prom = start_prometheus(
            workdir / "prom", rules, [f"127.0.0.1:{backend_port}"], am, job="backend"
        )
        print(f"Prometheus {prom.url}, Alertmanager {am.url}, backend 127.0.0.1:{backend_port}")
        config = write_config(
            workdir, prom.url, am.url, backend_port, f"http://127.0.0.1:{receiver.port}"
        )
        print(f"state and config in {workdir} (removed when the demo ends)\n")

        tick(config, workdir, receiver, "tick 0 (all healthy)")
        print("\n>>> breaking the backend (killing it)")
        subprocess.run([sys.executable, BACKEND, "stop", "--pidfile", pidfile], check=True)

        opened = resolved = False
        for number in range(1, 40):
            time.sleep(2)
            tick(config, workdir, receiver, f"tick {number}")
            listed = json.loads(incident(config, workdir, "list", "--status", "all", "--json"))
            if listed and not opened:
                opened = True
                print("\n" + incident(config, workdir, "list") + "\n")
            if opened and listed and listed[0]["status"] == "resolved":
                resolved = True
                break
        print("\n" + incident(config, workdir, "list", "--status", "all"))
        if listed:
            print("\n$ incident report --incident", listed[0]["id"])
            print(incident(config, workdir, "report", "--incident", str(listed[0]["id"])))
        print("\n$ incident report 1")
        print(incident(config, workdir, "report", "1"))
        recovered = bool(listed) and listed[0]["resolution"] == "recovered"
        print(
            f"\ndemo finished in {time.monotonic() - started:.0f}s:"
            f" {len(receiver.received)} notification(s) received,"
            f" incident {'recovered automatically' if recovered else 'NOT recovered'}"
        )
        return 0 if resolved and recovered else 1
    finally:
        subprocess.run([sys.executable, BACKEND, "stop", "--pidfile", pidfile], check=False)
        if prom is not None:
            prom.stop()
        if am is not None:
            am.stop()
        receiver.close()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
