"""A loopback server answering Prometheus' `/api/v1/query_range` for `ALERTS{alertstate="firing"}`
from a scripted alert history (for `incident replay`'s tests and bench), and a recorder of any
request at all (a channel endpoint that must never be called)."""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.support.binaries import serve_get, serve_handler


@dataclass
class Series:
    """One alert's labels and the [start, end) intervals it fired in (epoch seconds)."""

    labels: dict[str, str]
    firing: list[tuple[float, float]]


@dataclass
class AlertHistory:
    series: list[Series] = field(default_factory=list)
    requests: list[dict[str, str]] = field(default_factory=list)
    status: int = 200

    def add(self, labels: dict[str, str], *firing: tuple[float, float]) -> None:
        self.series.append(Series(labels, list(firing)))

    def answer(self, query: dict[str, str]) -> dict[str, Any]:
        """Each series' samples at start, start + step, ... end where it fires."""
        start, end, step = float(query["start"]), float(query["end"]), float(query["step"])
        last = round((end - start) / step)
        result = []
        for s in self.series:
            values = []
            for begin, stop in s.firing:
                first = max(0, math.ceil((begin - start) / step - 1e-9))
                final = min(last, math.ceil((stop - start) / step - 1e-9) - 1)
                values.extend([_time(start + i * step), "1"] for i in range(first, final + 1))
            if values:
                metric = {"__name__": "ALERTS", "alertstate": "firing", **s.labels}
                result.append({"metric": metric, "values": values})
        return {"status": "success", "data": {"resultType": "matrix", "result": result}}


def _time(t: float) -> float | int:
    return int(t) if t == int(t) else t


@contextlib.contextmanager
def serve_history(history: AlertHistory) -> Iterator[str]:
    """Serve `history` on a loopback port; yields its base URL. Every request is recorded."""

    def answer(request: Mapping[str, str]) -> tuple[int, bytes]:
        parts = urlsplit(request[":path"])
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        history.requests.append({"path": parts.path, **query})
        if parts.path != "/api/v1/query_range" or history.status != 200:
            status = history.status if history.status != 200 else 404
            return status, json.dumps({"status": "error", "error": "not here"}).encode()
        return 200, json.dumps(history.answer(query)).encode()

    with serve_get(answer) as url:
        yield url


@contextlib.contextmanager
def record_requests(seen: list[str]) -> Iterator[str]:
    """An endpoint that records the method and path of every request (and answers 200)."""

    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            seen.append(f"{self.command} {self.path}")
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

        def log_message(self, *args: object) -> None:
            pass

    with serve_handler(Handler) as url:
        yield url
