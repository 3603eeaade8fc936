"""A hard wall-clock deadline on the sockets of one exchange (HTTP's, SMTP's).

Socket timeouts bound each operation, not the exchange: a peer that sends its status line or
headers one byte a second never trips them. So each exchange runs under a watchdog that shuts
down the exchange's sockets when its deadline passes. `incident_cli.http` hands it every
socket it opens (or takes from a pool); name resolution is the system resolver's and is not
covered.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import socket
import threading
import time

_running = threading.local()


class Watchdog:
    """Shuts down the connections of one exchange when its deadline passes. Connections opened
    on this thread while it runs are adopted on their own; `adopt_socket` takes others.

    It keeps its own duplicate of each connection's descriptor: TLS moves the descriptor to a
    new socket object, and the original is then closed in Python's eyes. A shutdown through the
    duplicate ends the connection under whatever thread is blocked on it, TLS included.
    """

    def __init__(self, seconds: float) -> None:
        self.expired = False
        self._done = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._outer: Watchdog | None = None
        self._seconds = max(seconds, 0.0)

    def __enter__(self) -> Watchdog:
        self._outer = getattr(_running, "watchdog", None)
        _running.watchdog = self
        _ALARMS.add(time.monotonic() + self._seconds, self)
        return self

    def __exit__(self, *exc: object) -> None:
        _running.watchdog = self._outer
        with self._lock:
            self._done = True
            for duplicate in self._sockets:
                duplicate.close()
            self._sockets.clear()

    def adopt(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        with self._lock:
            if self._done:
                return
            try:
                duplicate = socket.socket(fileno=os.dup(sock.fileno()))
            except (OSError, ValueError):
                return  # already closed
            self._sockets.append(duplicate)
            if self.expired:
                _shut(duplicate)

    def expire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.expired = True
            for duplicate in self._sockets:
                _shut(duplicate)


class _Alarms:
    """One daemon thread that expires every watchdog at its deadline (a thread per exchange
    would cost more than a small exchange). A finished watchdog is dropped when its time
    comes; expiring it does nothing."""

    def __init__(self) -> None:
        self._wake = threading.Condition()
        self._due: list[tuple[float, int, Watchdog]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def add(self, when: float, watchdog: Watchdog) -> None:
        with self._wake:
            heapq.heappush(self._due, (when, next(self._order), watchdog))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="http-deadlines")
                self._thread.daemon = True
                self._thread.start()
            elif self._due[0][2] is watchdog:
                self._wake.notify()  # the earliest deadline now: wake up sooner

    def _run(self) -> None:
        with self._wake:
            while True:
                now = time.monotonic()
                while self._due and self._due[0][0] <= now:
                    heapq.heappop(self._due)[2].expire()
                self._wake.wait(self._due[0][0] - now if self._due else None)


_ALARMS = _Alarms()


def wall_clock(seconds: float) -> Watchdog:
    """`with wall_clock(s) as watchdog:` cuts the connections of the block off after s seconds."""
    return Watchdog(seconds)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def adopt_socket(sock: socket.socket | None) -> None:
    """Put a connection opened on this thread (SMTP's, say) under its running watchdog."""
    watchdog: Watchdog | None = getattr(_running, "watchdog", None)
    if watchdog is not None:
        watchdog.adopt(sock)
