"""A toy backend for the demo: `/health` and `/metrics` on loopback.

`toy_backend.py serve --port N` serves in the foreground; `toy_backend.py start --port N
--pidfile F` starts it detached (its own session, so it outlives the recovery command that
started it) and returns once it answers; `toy_backend.py stop --pidfile F` kills it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class Handler(BaseHTTPRequestHandler):
    requests_served = 0

    def do_GET(self) -> None:
        Handler.requests_served += 1
        if self.path.startswith("/metrics"):
            body = (
                "# TYPE http_requests_total counter\n"
                f'http_requests_total{{code="200"}} {Handler.requests_served}\n'
            ).encode()
        elif self.path.startswith("/health"):
            body = b"ok\n"
        else:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("action", choices=["serve", "start", "stop"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--pidfile")
    args = parser.parse_args()
    if args.action == "serve":
        ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()
        return 0
    if args.action == "stop":
        with contextlib.suppress(OSError, ValueError):
            pid = int(Path(args.pidfile).read_text())
            os.kill(pid, signal.SIGKILL)
        return 0
    proc = subprocess.Popen(
        [sys.executable, __file__, "serve", "--port", str(args.port)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    if args.pidfile:
        Path(args.pidfile).write_text(str(proc.pid))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if healthy(args.port):
            print(f"backend started on 127.0.0.1:{args.port} (pid {proc.pid})")
            return 0
        time.sleep(0.1)
    print("backend did not come up", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
