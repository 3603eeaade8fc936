"""Slow and hostile peers: a source or a channel that sends its answer one byte a second costs
its own timeout and no more, and a tick never runs past --max-runtime. Every tick here is
`python -m incident_cli` in a subprocess, as cron runs it, against a slow-loris peer that is a
process of its own (tests/support/slow_peer.py)."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest

from incident_cli.store.connection import open_db
from tests.support import backend
from tests.support.binaries import CliResult, run_cli, serve_get
from tests.support.builders import FIXTURES, write_config
from tests.support.notify import alert as notify_alert
from tests.support.notify import make_setup, receiver

pytestmark = pytest.mark.usefixtures("both_backends")

SLOW_PEER = Path(__file__).parent / "support" / "slow_peer.py"
# A tick that hangs would run for a day: the subprocess is killed (and the test fails) here.
HANG = 60.0


@contextmanager
def slow_peer(mode: str = "http", *tls: Path) -> Iterator[int]:
    """The port of a slow-loris process that drips one byte a second and never finishes."""
    proc = subprocess.Popen(
        [sys.executable, str(SLOW_PEER), mode, *map(str, tls)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        yield int(proc.stdout.readline())
    finally:
        proc.kill()
        proc.wait(10)


def prometheus_alerts() -> AbstractContextManager[str]:
    """A loopback source answering with what Prometheus 2.42 answered (3 alerts, 2 firing)."""
    payload = (FIXTURES / "prometheus-2.42" / "prometheus_v1_alerts.json").read_bytes()
    return serve_get(lambda headers: (200, payload))


def tick(tmp_path: Path, *args: str) -> tuple[CliResult, float]:
    started = time.monotonic()
    result = run_cli(
        [
            "--config",
            str(tmp_path / "incident.yaml"),
            "--db",
            backend.locate(tmp_path / "state.db"),
            *args,
        ],
        cwd=tmp_path,
        timeout=HANG,
    )
    return result, time.monotonic() - started


def query(db: Path, sql: str) -> list[tuple[object, ...]]:
    opened = open_db(backend.locate(db))
    try:
        return [tuple(row) for row in opened.conn.execute(sql).fetchall()]
    finally:
        opened.close()


def peers_config(tmp_path: Path, sources: str, channels: str = "", notify: str = "") -> None:
    text = f"sources:\n{sources}\n"
    if channels:
        text += f"defaults: {{notify: [{notify}]}}\nchannels:\n{channels}\n"
    write_config(tmp_path, text)


def test_a_source_that_drips_its_headers_costs_its_timeout_and_the_others_are_applied(
    tmp_path: Path,
) -> None:
    with slow_peer() as port, prometheus_alerts() as good:
        peers_config(
            tmp_path,
            f"  slow: {{type: prometheus, url: 'http://127.0.0.1:{port}', timeout: 3s}}\n"
            f"  good: {{type: prometheus, url: '{good}', timeout: 5s}}",
        )
        first, took = tick(tmp_path, "poll")
        second, _ = tick(tmp_path, "poll")

    assert first.code == 75, first.stderr
    assert took < 15, f"poll ran {took:.0f}s against a 3s timeout"
    assert "source slow: timed out after 3s" in first.stderr
    opened = query(tmp_path / "state.db", "SELECT source, title FROM incidents ORDER BY id")
    assert [source for source, _ in opened] == ["good", "good"]
    # The next tick is not locked out: it fails on the slow source (said once, on the first
    # tick), not on the lock.
    assert second.code == 75 and "lock" not in second.stderr


def test_a_source_that_drips_after_the_tls_handshake_is_cut_off_too(
    tmp_path: Path, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    with slow_peer("https", cert, key) as port:
        peers_config(
            tmp_path,
            f"  slow: {{type: prometheus, url: 'https://127.0.0.1:{port}', timeout: 2s,"
            f" ca_file: '{cert}'}}",
        )
        result, took = tick(tmp_path, "poll")

    assert took < 12, f"poll ran {took:.0f}s against a 2s timeout"
    assert result.code == 75
    assert result.stderr.startswith(
        "incident: source slow: timed out after 2s (nothing changed for source slow"
    )


def test_channels_that_drip_cost_their_own_messages_and_the_others_go_out(
    tmp_path: Path,
) -> None:
    with slow_peer("http") as http_port, slow_peer("smtp") as smtp_port, receiver() as good:
        setup = make_setup(
            tmp_path,
            {
                "slowhook": f"{{type: webhook, url: 'http://127.0.0.1:{http_port}/', timeout: 3s}}",
                "slowmail": f"{{type: email, host: 127.0.0.1, port: {smtp_port},"
                " from: incidents@example.com, to: [oncall@example.com], timeout: 3s}",
                "good": f"{{type: webhook, url: '{good.url}/hook', timeout: 5s}}",
            },
        )
        setup.fire([notify_alert(service="backend"), notify_alert(service="db")], time.time())
        result, took = tick(tmp_path, "notify")
        assert [r.body["event"] for r in good.received] == ["firing", "firing"]

    assert result.code == 0, result.stderr
    assert took < 15, f"notify ran {took:.0f}s against 3s timeouts"
    errors = query(
        setup.db_path,
        "SELECT channel, status, error FROM notifications WHERE channel != 'good' ORDER BY id",
    )
    assert {(c, s, e) for c, s, e in errors if e} == {
        ("slowhook", "pending", "webhook: timed out after 3s"),
        ("slowmail", "pending", "email: timed out after 3s"),
    }


def test_notify_stops_at_max_runtime_but_a_slow_channel_does_not_hold_up_the_others(
    tmp_path: Path,
) -> None:
    with slow_peer() as port, receiver() as good:
        setup = make_setup(
            tmp_path,
            {
                "slowhook": f"{{type: webhook, url: 'http://127.0.0.1:{port}/', timeout: 60s}}",
                "good": f"{{type: webhook, url: '{good.url}/hook', timeout: 60s}}",
            },
        )
        setup.fire([notify_alert(service="backend")], time.time())
        result, took = tick(tmp_path, "notify", "--max-runtime", "3s")
        again, _ = tick(tmp_path, "notify")
        assert [r.body["event"] for r in good.received] == ["firing"]

    assert took < 15, f"notify ran {took:.0f}s against --max-runtime 3s"
    assert result.code == 75
    [line] = result.stderr.splitlines()
    assert re.fullmatch(
        r"incident: notify: stopped at its max runtime of 3s \(--max-runtime\);"
        r" slowest: channel slowhook (2\.\d|3\.0)s",
        line,
    )
    assert "lock" not in again.stderr and again.code == 0


def test_run_with_a_source_slower_than_max_runtime_still_notifies_the_healthy_ones(
    tmp_path: Path,
) -> None:
    # The slow source's timeout is more than the whole limit: its reads are cut at 60% of it, so
    # the healthy source's incidents page in the same run (not "left for the next tick", which
    # the same source would spend again, forever).
    with slow_peer() as port, prometheus_alerts() as good, receiver() as hook:
        peers_config(
            tmp_path,
            f"  slow: {{type: prometheus, url: 'http://127.0.0.1:{port}', timeout: 60s}}\n"
            f"  good: {{type: prometheus, url: '{good}', timeout: 5s}}",
            channels=f"  hook: {{type: webhook, url: '{hook.url}/hook', timeout: 5s}}",
            notify="hook",
        )
        result, took = tick(tmp_path, "--max-runtime", "5s", "run", "--json")
        fired = [r.body["event"] for r in hook.received]
        again, _ = tick(tmp_path, "run", "--max-runtime", "5s")

    assert took < 15, f"run ran {took:.0f}s against --max-runtime 5s"
    assert result.code == 75
    assert fired == ["firing", "firing"]  # both of the good source's incidents, this run
    assert re.search(r"source slow: timed out after (2\.\d|3)s", result.stderr)
    assert re.search(
        r"^incident: poll: source\(s\) slow cut off at 3\.0s, 60% of the max runtime of 5s"
        r" \(--max-runtime\), so that notify gets its turn$",
        result.stderr,
        re.MULTILINE,
    )
    stages = {s["stage"]: s for s in json.loads(result.stdout)["stages"]}
    assert stages["poll"]["result"]["opened"] == [1, 2]  # the good source was applied
    assert stages["poll"]["exit_code"] == 75
    assert [r[0] for r in query(tmp_path / "state.db", "SELECT source FROM incidents")] == [
        "good",
        "good",
    ]
    assert query(tmp_path / "state.db", "SELECT DISTINCT status FROM notifications") == [("sent",)]
    # The next tick gets the lock; the slow source is not news any more (said with -v only).
    assert again.code == 75 and "lock" not in again.stderr
    assert "cut off" not in again.stderr


@pytest.mark.parametrize("command", ["poll", "notify", "recover", "run"])
def test_a_bad_max_runtime_is_a_usage_error(tmp_path: Path, command: str) -> None:
    peers_config(tmp_path, "  p: {type: prometheus, url: 'http://127.0.0.1:9'}")
    result, _ = tick(tmp_path, command, "--max-runtime", "soon")
    assert result.code == 2
    assert result.stderr == (
        "incident: --max-runtime: 'soon' is not a duration (use e.g. 90s, 5m, 2h, 1d)\n"
    )


def test_recover_cuts_a_promql_diagnostic_to_a_slow_source_at_max_runtime(tmp_path: Path) -> None:
    from incident_cli.config.load import load_config
    from incident_cli.lifecycle.poll import apply_poll
    from tests.support.recover import alert as recover_alert

    with slow_peer() as port:
        peers_config(
            tmp_path,
            f"  slow: {{type: prometheus, url: 'http://127.0.0.1:{port}', timeout: 60s}}\n"
            "rules:\n"
            "  - {name: latency, match: {alertname: Slow}, handler: performance_issue,\n"
            "     diagnostics: {queries: ['up'], timeout: 60s}}",
        )
        config = load_config(tmp_path / "incident.yaml", {})
        db = open_db(backend.locate(tmp_path / "state.db"))
        apply_poll(db, config, {"slow": [recover_alert(alertname="Slow")]}, {}, time.time())
        db.close()
        result, took = tick(tmp_path, "recover", "--max-runtime", "2s")
        again, _ = tick(tmp_path, "recover")

    assert took < 12, f"recover ran {took:.0f}s against --max-runtime 2s"
    assert result.code == 75
    assert re.search(
        r"incident: recover: stopped at its max runtime of 2s \(--max-runtime\);"
        r" slowest: action 1 \(diagnostics\) (1\.\d|2\.\d)s",
        result.stderr,
    )
    [(status, error)] = query(tmp_path / "state.db", "SELECT status, error FROM actions")
    assert status == "failed" and "query on slow: timed out after" in str(error)
    assert "lock" not in again.stderr


def test_a_kept_alive_connection_that_turns_slow_is_cut_off_too() -> None:
    """The second exchange reuses the first one's connection; the peer then drips."""
    import socket

    from incident_cli.http import HTTPFailure, exchange, new_session

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    connections: list[socket.socket] = []

    def serve() -> None:
        conn, _ = server.accept()  # one connection only: a second would never be answered
        connections.append(conn)
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
            conn.recv(65536)
            with contextlib.suppress(OSError):  # the client hangs up at its deadline
                for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 60:
                    conn.sendall(bytes([byte]))
                    time.sleep(0.5)

    threading.Thread(target=serve, daemon=True).start()
    url = f"http://127.0.0.1:{server.getsockname()[1]}/"
    with new_session() as session:
        assert exchange("GET", url, timeout=5, session=session).body == b"{}"
        started = time.monotonic()
        with pytest.raises(HTTPFailure, match=r"timed out after 1\.5s"):
            exchange("GET", url, timeout=1.5, session=session)
    assert time.monotonic() - started < 4
    assert len(connections) == 1  # the second exchange did reuse the first one's connection
    server.close()


def test_run_with_a_slow_source_and_a_slow_channel_still_pages_through_the_healthy_ones(
    tmp_path: Path,
) -> None:
    with slow_peer() as port, prometheus_alerts() as good_source, receiver() as good_hook:
        peers_config(
            tmp_path,
            f"  slow: {{type: prometheus, url: 'http://127.0.0.1:{port}', timeout: 2s}}\n"
            f"  good: {{type: prometheus, url: '{good_source}', timeout: 5s}}",
            channels=(
                f"  slowhook: {{type: webhook, url: 'http://127.0.0.1:{port}/', timeout: 2s}}\n"
                f"  good: {{type: webhook, url: '{good_hook.url}/hook', timeout: 5s}}"
            ),
            notify="slowhook, good",
        )
        result, took = tick(tmp_path, "run")
        again, _ = tick(tmp_path, "run")
        fired = sorted(r.body["incident"]["title"] for r in good_hook.received)

    assert took < 20, f"run ran {took:.0f}s against 2s timeouts"
    assert result.code == 75 and "source slow: timed out after 2s" in result.stderr
    assert len(fired) == 2  # both incidents of the healthy source paged the healthy channel
    assert query(
        tmp_path / "state.db",
        "SELECT DISTINCT error FROM notifications WHERE channel = 'slowhook'",
    ) == [("webhook: timed out after 2s",)]
    assert again.code == 75 and "lock" not in again.stderr
