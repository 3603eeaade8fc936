"""Real Prometheus and Alertmanager binaries on loopback ports, a toy exporter, and the CLI as
cron runs it — for the integration tests and the demo."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent.parent
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
ALERTMANAGER = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"
AMTOOL = shutil.which("amtool") or "/usr/bin/amtool"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.2) -> Any:
    """Poll `predicate` until it returns something truthy; fail loudly on timeout."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except Exception as exc:  # the thing we wait for may not be up yet
            last_error = exc
            value = None
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"condition not met within {timeout}s (last error: {last_error!r})")


def http_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


@contextlib.contextmanager
def serve_get(answer: Callable[[Mapping[str, str]], tuple[int, bytes]]) -> Iterator[str]:
    """A loopback HTTP server answering every GET with `answer(request headers)`: (status,
    JSON body). The headers also carry the request's path and query as `:path`. Yields its
    base URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = answer({**self.headers, ":path": self.path})
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    with serve_handler(Handler) as url:
        yield url


@contextlib.contextmanager
def serve_handler(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A loopback HTTP server (a thread per request) with this handler; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# --------------------------------------------------------------------------- toy exporter


class ToyExporter:
    """An in-process HTTP exporter: `/metrics` serves `toy_value{name="..."} V` for each value
    the test sets and each raw series of `series` (`'node_md_state{device="md0"}': 1`, for
    third-party rules), `/health` answers 200 while `healthy` is true."""

    def __init__(self) -> None:
        self.values: dict[str, float] = {}
        self.series: dict[str, float] = {}
        self.healthy = True
        self.port = free_port()
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.startswith("/metrics"):
                    body = "".join(
                        [
                            *(
                                f'toy_value{{name="{name}"}} {value}\n'
                                for name, value in sorted(exporter.values.items())
                            ),
                            *(f"{s} {v}\n" for s, v in sorted(dict(exporter.series).items())),
                        ]
                    ).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain; version=0.0.4")
                elif self.path.startswith("/health"):
                    body = b"ok\n" if exporter.healthy else b"down\n"
                    self.send_response(200 if exporter.healthy else 503)
                else:
                    body = b"not found\n"
                    self.send_response(404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def set(self, name: str, value: float) -> None:
        self.values[name] = value

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


# --------------------------------------------------------------------------- binaries


@dataclass
class Process:
    name: str
    argv: list[str]
    workdir: Path
    port: int
    ready_path: str
    ready_headers: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.workdir / f"{self.name}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
                start_new_session=True,
            )
        try:
            wait_until(self._ready, timeout=timeout)
        except TimeoutError:
            self.stop()
            log = self.log.read_text()[-3000:]
            raise RuntimeError(f"{self.name} did not start; log:\n{log}") from None

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited:\n{self.log.read_text()[-3000:]}")
        request = urllib.request.Request(self.url + self.ready_path, headers=self.ready_headers)
        with urllib.request.urlopen(request, timeout=2) as response:
            return bool(response.status == 200)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: as if the machine lost it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


def start_alertmanager(
    workdir: Path, webhook_url: str | None = None, *, config: dict[str, Any] | None = None
) -> Process:
    """Alertmanager on a free loopback port. By default one route (group_wait 1s) to one
    receiver, `webhook_url` if given; `config` replaces that whole configuration."""
    workdir.mkdir(parents=True, exist_ok=True)
    if config is None:
        receiver: dict[str, Any] = {"name": "hook"}
        if webhook_url:
            receiver["webhook_configs"] = [{"url": webhook_url, "send_resolved": True}]
        config = {
            "route": {
                "receiver": "hook",
                "group_wait": "1s",
                "group_interval": "1s",
                "repeat_interval": "1h",
            },
            "receivers": [receiver],
        }
    (workdir / "alertmanager.yml").write_text(json.dumps(config))
    port = free_port()
    am = Process(
        name="alertmanager",
        argv=[
            ALERTMANAGER,
            f"--config.file={workdir / 'alertmanager.yml'}",
            f"--storage.path={workdir / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
            "--log.level=warn",
        ],
        workdir=workdir,
        port=port,
        ready_path="/-/ready",
    )
    am.start()
    return am


def start_prometheus(
    workdir: Path,
    rules_yaml: str,
    targets: list[str],
    alertmanager: Process | None = None,
    job: str = "toy",
    *,
    web_config: Path | None = None,
    ready_auth: tuple[str, str] | None = None,
) -> Process:
    """Prometheus scraping `targets` (as `job`) every second and evaluating `rules_yaml` every
    second. `web_config` is its --web.config.file (TLS, basic_auth_users); `ready_auth` the
    user and password its readiness probe then needs."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "rules.yml").write_text(rules_yaml)
    config: dict[str, Any] = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "900ms"},
        "rule_files": [str(workdir / "rules.yml")],
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": targets}]}],
    }
    if alertmanager is not None:
        config["alerting"] = {
            "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{alertmanager.port}"]}]}]
        }
    (workdir / "prometheus.yml").write_text(json.dumps(config))
    port = free_port()
    prom = Process(
        name="prometheus",
        argv=[
            PROMETHEUS,
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'prom-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=1h",
            "--log.level=warn",
            *([f"--web.config.file={web_config}"] if web_config else []),
        ],
        workdir=workdir,
        port=port,
        ready_path="/-/ready",
        ready_headers=basic_auth_header(*ready_auth) if ready_auth else {},
    )
    prom.start()
    return prom


def basic_auth_header(user: str, password: str) -> dict[str, str]:
    """Basic auth as RFC 7617 says, UTF-8 (urllib's own handler would send Latin-1)."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def prometheus_alert_states(prom: Process) -> dict[str, str]:
    """alertname (+ name label) → state, from Prometheus' own API."""
    body = http_json(prom.url + "/api/v1/alerts")
    return {
        f"{a['labels'].get('alertname')}/{a['labels'].get('name', '')}": a["state"]
        for a in body["data"]["alerts"]
    }


def alertmanager_states(am: Process) -> dict[str, str]:
    return {
        f"{a['labels'].get('alertname')}/{a['labels'].get('name', '')}": a["status"]["state"]
        for a in http_json(am.url + "/api/v2/alerts")
    }


# --------------------------------------------------------------------------- the CLI


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def cli_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A cron-like environment: PATH and HOME, nothing of the developer's incident settings."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(REPO),
        "NO_COLOR": "1",
    }
    env.update(extra or {})
    return env


def run_cli(
    args: list[str],
    *,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
) -> CliResult:
    """Run `incident` in a fresh process, exactly as cron would."""
    completed = subprocess.run(
        [sys.executable, "-m", "incident_cli", *args],
        cwd=cwd,
        env=cli_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    return CliResult(completed.returncode, completed.stdout, completed.stderr)


def invoke(*args: str) -> Any:
    """`incident ARGS` in this process (typer's CliRunner), for a test that patches what the
    command calls; exceptions are not caught. As cron runs it: `run_cli`."""
    from typer.testing import CliRunner

    from incident_cli.cli import app

    return CliRunner().invoke(app, list(args), catch_exceptions=False)


@contextlib.contextmanager
def stack(
    workdir: Path, rules_yaml: str, *, with_alertmanager: bool = True
) -> Iterator[tuple[ToyExporter, Process, Process | None]]:
    """Exporter + Alertmanager (optional) + Prometheus, all torn down afterwards."""
    exporter = ToyExporter()
    am = start_alertmanager(workdir / "am") if with_alertmanager else None
    prom = None
    try:
        prom = start_prometheus(workdir / "prom", rules_yaml, [exporter.address], am)
        yield exporter, prom, am
    finally:
        if prom is not None:
            prom.stop()
        if am is not None:
            am.stop()
        exporter.close()


# --------------------------------------------------------------------------- start-up

_PROBE = """
import atexit, json, sys
heavy = json.loads(sys.argv.pop(1))
def report():
    sys.stderr.write("MODULES " + json.dumps(sorted(m for m in heavy if m in sys.modules)) + "\\n")
atexit.register(report)
sys.argv = ["incident", *sys.argv[1:]]
from incident_cli.cli import main
main()
"""


def imported_modules(
    cwd: Path, *args: str, heavy: tuple[str, ...], env: Mapping[str, str] | None = None
) -> tuple[list[str], subprocess.CompletedProcess[str]]:
    """Which of `heavy` an `incident` command imported, run in a fresh interpreter through
    the console script's entry point."""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(heavy), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=cli_env({"HOME": str(cwd), **(env or {})}),
        check=False,
    )
    line = next(x for x in done.stderr.splitlines() if x.startswith("MODULES "))
    modules: list[str] = json.loads(line.removeprefix("MODULES "))
    return modules, done


def process_state(pid: int) -> str | None:
    """The one-letter state of a process (R, S, T, Z, ...), None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()[0]
