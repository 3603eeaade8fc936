"""Shared pieces for the notification tests: a state DB with incidents, loopback receivers.

(No tests here; the notification test files import it.)
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from incident_cli.config.load import load_config
from incident_cli.config.model import Config
from incident_cli.lifecycle.manual import acknowledge, resolve_by_hand
from incident_cli.models import Alert
from incident_cli.store.connection import open_db
from tests.support import backend
from tests.support.builders import T0, alert, fire

__all__ = ["T0", "Setup", "alert", "make_setup"]


BASE_YAML = """
sources:
  prometheus: {type: prometheus, url: "http://127.0.0.1:1"}
defaults: {severity: warning, notify: [%(notify)s]}
rules:
  - name: backend-down
    match: {alertname: BackendServiceDown}
    severity: critical
    group_by: [alertname, service]
    runbook: https://runbooks.example.com/backend-down
links: {grafana: "https://grafana.example.com/d/abc"}
channels:
%(channels)s
"""


@dataclass
class Setup:
    config_path: Path
    db_path: Path
    config: Config

    def db(self) -> Any:
        return open_db(backend.locate(self.db_path))

    def add_config(self, yaml_text: str) -> None:
        """Append top-level YAML (e.g. an `incidents:` section) and reload the config."""
        self.config_path.write_text(self.config_path.read_text() + yaml_text + "\n")
        self.config = load_config(self.config_path, {}, must_exist=True)

    def fire(self, alerts: list[Alert], now: float = T0) -> list[int]:
        """One poll in which exactly these alerts fire: the incidents it opened."""
        db = self.db()
        try:
            return fire(db, self.config, now, *alerts).opened
        finally:
            db.close()


def make_setup(tmp_path: Path, channels: dict[str, str], notify: list[str] | None = None) -> Setup:
    """A config with the given channels (name → YAML flow mapping) and a fresh DB."""
    lines = "\n".join(f"  {name}: {spec}" for name, spec in channels.items())
    text = BASE_YAML % {"notify": ", ".join(notify or list(channels)), "channels": lines}
    config_path = tmp_path / "incident.yaml"
    config_path.write_text(text)
    db_path = tmp_path / "state.db"
    config = load_config(config_path, {}, must_exist=True)
    open_db(backend.locate(db_path)).close()
    return Setup(config_path, db_path, config)


def ack(setup: Setup, incident_id: int, now: float = T0 + 60) -> None:
    db = setup.db()
    try:
        acknowledge(db, setup.config, incident_id, "alice", None, now)
    finally:
        db.close()


def resolve(setup: Setup, incident_id: int, now: float = T0 + 120) -> None:
    db = setup.db()
    try:
        resolve_by_hand(db, setup.config, incident_id, "alice", None, False, now)
    finally:
        db.close()


def rows(
    setup: Setup, sql: str = "SELECT * FROM notifications ORDER BY id"
) -> list[dict[str, Any]]:
    db = setup.db()
    try:
        return [dict(r) for r in db.query(sql)]
    finally:
        db.close()


def dump_db(path: Path) -> str:
    """Every value of every row of every table, as text (for grepping for secrets)."""
    db = open_db(backend.locate(path))
    try:
        out = []
        tables = (
            [
                row[0]
                for row in db.conn.execute(
                    "SELECT table_name FROM information_schema.tables"
                    " WHERE table_schema = current_schema()"
                )
            ]
            if db.is_postgres
            else db.table_names()
        )
        for table in tables:
            for row in db.query(f'SELECT * FROM "{table}"'):
                out.append(json.dumps(row, default=str, ensure_ascii=False))
        return "\n".join(out)
    finally:
        db.close()


# --------------------------------------------------------------------------- HTTP receiver


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


Reply = tuple[int, dict[str, str], bytes]


@dataclass
class Receiver:
    """A loopback HTTP server that records requests and answers from a script.

    `script` is a list of replies used in order (the last one repeats), or a callable.
    """

    script: list[Reply] | Callable[[Received], Reply] = field(
        default_factory=lambda: [(202, {}, b'{"status":"success"}')]
    )
    received: list[Received] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def reply(self, request: Received) -> Reply:
        if callable(self.script):
            return self.script(request)
        index = min(len(self.received) - 1, len(self.script) - 1)
        return self.script[index]


@contextmanager
def receiver(script: Any = None) -> Iterator[Receiver]:
    state = Receiver() if script is None else Receiver(script=script)

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body: Any = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode("utf-8", "replace")
            request = Received(self.command, self.path, dict(self.headers), body)
            state.received.append(request)
            status, headers, payload = state.reply(request)
            try:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except OSError:
                pass  # the client went away (killed or timed out)

        do_GET = do_POST = do_PATCH = do_PUT = _handle

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.server = server
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def closed_port() -> int:
    """A loopback port nobody listens on (connections are refused)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    sock.close()
    return port


@contextmanager
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections and never says a word (a timeout)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
                accepted.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(sock.getsockname()[1])
    finally:
        stop.set()
        thread.join(1)
        for conn in accepted:
            conn.close()
        sock.close()


class FakeClock:
    """Wall clock and monotonic clock that move only when the code sleeps (or the test says)."""

    def __init__(self, now: float = T0) -> None:
        self.now = now
        self.mono = 1000.0
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.mono += seconds


def deliver(setup: Setup, clock: FakeClock | None = None, **kwargs: Any) -> Any:
    """One `notify` tick in-process with a fake clock; returns the DeliveryReport."""
    from incident_cli.notify.delivery import deliver_due

    clock = clock or FakeClock(T0 + 1)
    db = setup.db()
    try:
        return deliver_due(
            db,
            setup.config,
            clock=clock.time,
            sleep=clock.sleep,
            monotonic=clock.monotonic,
            **kwargs,
        )
    finally:
        db.close()


def sync(setup: Setup, now: float = T0 + 60) -> Any:
    """One `sync` in-process; returns the SyncResult."""
    from incident_cli.intake.sync import sync_once

    db = setup.db()
    try:
        return sync_once(db, setup.config, now)
    finally:
        db.close()


def incident_row(setup: Setup, incident_id: int = 1) -> dict[str, Any]:
    return rows(setup, f"SELECT * FROM incidents WHERE id = {int(incident_id)}")[0]
