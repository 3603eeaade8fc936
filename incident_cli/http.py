"""Every HTTP exchange `incident` makes: session, User-Agent, auth, TLS, errors, and a hard
wall-clock deadline.

requests' timeouts bound each socket operation, not the exchange: a peer that sends its status
line or headers one byte a second never trips them. So each exchange runs under a watchdog
timer that shuts down the exchange's socket when its deadline passes. The connection classes
below hand every socket they open (or take from the pool) to the watchdog of the exchange
running on their thread. Name resolution is the system resolver's and is not covered.
"""

from __future__ import annotations

import base64
import contextlib
import heapq
import itertools
import json
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

USER_AGENT = "incident-cli"
CONNECT_TIMEOUT = 10.0
MAX_RETRY_AFTER = 86400.0
# urllib3 logs every request line at DEBUG, path included, and a Slack webhook's path is its
# secret. Nothing in `incident` turns DEBUG on, but a user handler or a test might.
logging.getLogger("urllib3.connectionpool").setLevel(logging.INFO)


class HTTPFailure(Exception):
    """The exchange did not complete. `reason` is short and never holds the URL (which may
    carry credentials)."""

    def __init__(self, reason: str, *, timed_out: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.timed_out = timed_out


@dataclass(frozen=True)
class Reply:
    """A completed exchange: any status, the body (capped) and the Retry-After it asked for."""

    status: int
    body: bytes | bytearray
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        """The body as JSON, or None when it is not JSON."""
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return None


@dataclass(frozen=True)
class Credentials:
    """Who the exchange authenticates as: basic auth (sent as UTF-8, RFC 7617) or a bearer
    token."""

    username: str | None = None
    password: str | None = None
    bearer_token: str | None = None

    def headers(self) -> dict[str, str]:
        if self.username:
            pair = f"{self.username}:{self.password or ''}".encode()
            return {"Authorization": f"Basic {base64.b64encode(pair).decode('ascii')}"}
        if self.bearer_token:
            return {"Authorization": f"Bearer {self.bearer_token}"}
        return {}


# --------------------------------------------------------------------------- the watchdog

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


class _Connection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        adopt_socket(sock)
        return sock


class _TLSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        adopt_socket(sock)
        return sock


class _Pool(HTTPConnectionPool):
    ConnectionCls = _Connection

    def _get_conn(self, timeout: float | None = None) -> Any:
        conn = super()._get_conn(timeout)
        # A kept-alive connection, opened by an earlier exchange: it has no new socket.
        adopt_socket(getattr(conn, "sock", None))
        return conn


class _TLSPool(HTTPSConnectionPool):
    ConnectionCls = _TLSConnection

    def _get_conn(self, timeout: float | None = None) -> Any:
        conn = super()._get_conn(timeout)
        adopt_socket(getattr(conn, "sock", None))
        return conn


_POOLS = {"http": _Pool, "https": _TLSPool}


class _Adapter(HTTPAdapter):
    """requests' adapter with the connection classes above (send is requests' own)."""

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_POOLS)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        # An HTTP proxy: the same connection classes. A SOCKS proxy keeps its own (its
        # connections are bounded by the per-read timeouts only).
        if not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = dict(_POOLS)
        return manager


def new_session() -> requests.Session:
    """A session whose exchanges can be cut off at their deadline."""
    session = requests.Session()
    _mount(session)
    return session


def _mount(session: requests.Session) -> None:
    if not isinstance(session.get_adapter("http://x"), _Adapter):
        session.mount("http://", _Adapter())
    if not isinstance(session.get_adapter("https://x"), _Adapter):
        session.mount("https://", _Adapter())


# --------------------------------------------------------------------------- one exchange


def exchange(
    method: str,
    url: str,
    *,
    timeout: float,
    session: requests.Session | None = None,
    params: Mapping[str, str] | None = None,
    json_body: Any = None,
    headers: Mapping[str, str] | None = None,
    credentials: Credentials | None = None,
    ca_file: str | None = None,
    insecure_skip_verify: bool = False,
    body_limit: int = 64 * 1024,
    over_limit: str = "cut",
) -> Reply:
    """One request and its answer, all of it (connect, status line, headers, body) within
    `timeout` seconds of wall-clock time, whatever the peer does. Redirects are not followed.

    The body is read up to `body_limit` bytes: past it, `over_limit="cut"` keeps the start and
    `"fail"` raises. Raises HTTPFailure when there is no complete answer.
    """
    own = session is None
    session = new_session() if session is None else session
    try:
        _mount(session)
        return _exchange(
            session,
            method,
            url,
            timeout,
            params=params,
            json_body=json_body,
            headers={**(credentials.headers() if credentials else {}), **(headers or {})},
            verify=False if insecure_skip_verify else (ca_file or True),
            body_limit=body_limit,
            over_limit=over_limit,
        )
    finally:
        if own:
            session.close()


def _exchange(
    session: requests.Session,
    method: str,
    url: str,
    timeout: float,
    *,
    params: Mapping[str, str] | None,
    json_body: Any,
    headers: Mapping[str, str],
    verify: bool | str,
    body_limit: int,
    over_limit: str,
) -> Reply:
    if verify is False:
        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    sent_headers = {"User-Agent": USER_AGENT, **headers}
    timed_out = HTTPFailure(f"timed out after {round(max(timeout, 0.0), 1):g}s", timed_out=True)
    if timeout <= 0:
        raise timed_out
    with wall_clock(timeout) as watchdog:
        try:
            response = session.request(
                method,
                url,
                params=params,
                json=json_body,
                headers=sent_headers,
                timeout=(min(timeout, CONNECT_TIMEOUT), timeout),
                verify=verify,
                stream=True,
                allow_redirects=False,
            )
            whole = False
            try:
                body, whole = _read_body(response, body_limit, over_limit, watchdog)
                status = response.status_code
                retry_after = response.headers.get("Retry-After")
            finally:
                if whole and not watchdog.expired:
                    # Read to its end: the connection goes back to the pool for the next
                    # exchange (closing the response would close the connection).
                    response.raw.release_conn()
                else:
                    response.close()
        except HTTPFailure:
            raise
        except requests.exceptions.RequestException as exc:
            raise (timed_out if watchdog.expired else HTTPFailure(describe_error(exc))) from None
        except urllib3.exceptions.ReadTimeoutError:
            raise timed_out from None
        except urllib3.exceptions.DecodeError:
            raise HTTPFailure("answered with a body that cannot be decoded") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            if watchdog.expired:
                raise timed_out from None
            # raw reads are not wrapped by requests: a connection cut mid-body lands here
            raise HTTPFailure(
                f"connection broke while reading ({exc.__class__.__name__})"
            ) from None
        if watchdog.expired:
            raise timed_out
    return Reply(status, body, parse_retry_after(retry_after, time.time()))


def _read_body(
    response: requests.Response, limit: int, over_limit: str, watchdog: Watchdog
) -> tuple[bytearray, bool]:
    """The body (at most `limit` bytes) and whether it was read to its end."""
    # One growing buffer rather than a list of chunks and a join: a big answer is held once.
    body = bytearray()
    while len(body) <= limit and not watchdog.expired:
        # read1 returns whatever has arrived; the watchdog ends a read that waits too long.
        chunk = response.raw.read1(65536, decode_content=True)
        if not chunk:
            return body, True
        body += chunk
    if len(body) > limit:
        if over_limit == "fail":
            raise HTTPFailure(f"response larger than {_size(limit)}")
        del body[limit:]
    return body, False


def probe(url: str, timeout: float) -> tuple[bool, str]:
    """GET a health URL once: (healthy, what it answered). Never raises."""
    try:
        reply = exchange("GET", url, timeout=timeout, body_limit=0)
    except HTTPFailure as exc:
        return False, exc.reason
    return reply.ok, f"HTTP {reply.status}"


def _size(limit: int) -> str:
    return f"{limit >> 20} MiB" if limit >= 1 << 20 else f"{limit >> 10} KiB"


def describe_error(exc: BaseException) -> str:
    """A short reason that never includes the URL (which may carry credentials)."""
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS error"
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return "connection timed out"
    if isinstance(exc, requests.exceptions.Timeout):
        return "timed out"
    if isinstance(exc, requests.exceptions.ConnectionError):
        text = str(exc).lower()
        if "refused" in text:
            return "connection refused"
        if "name or service not known" in text or "nodename nor servname" in text:
            return "host not found"
        return "connection failed"
    return exc.__class__.__name__


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP date (RFC 9110)."""
    if not value:
        return None
    value = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return min(float(value), MAX_RETRY_AFTER)
    import email.utils  # only for an HTTP date; it costs start-up time

    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return min(max(parsed.timestamp() - now, 0.0), MAX_RETRY_AFTER)
