"""Every HTTP exchange `incident` makes: session, User-Agent, auth, TLS, errors, and a hard
wall-clock deadline.

requests' timeouts bound each socket operation, not the exchange: a peer that sends its status
line or headers one byte a second never trips them. So each exchange runs under a watchdog
(`incident_cli.deadline`) that shuts down the exchange's socket when its deadline passes. The
connection classes below hand every socket they open (or take from the pool) to the watchdog of
the exchange running on their thread. Name resolution is the system resolver's and is not
covered.
"""

from __future__ import annotations

import functools
import json
import os
import re
import socket
import sys
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from incident_cli import http1

# Re-exported: callers (the SMTP transport) put their own sockets under the same deadline.
from incident_cli.deadline import Watchdog
from incident_cli.deadline import adopt_socket as adopt_socket
from incident_cli.deadline import wall_clock as wall_clock

if TYPE_CHECKING:
    import requests

USER_AGENT = "incident-cli"
CONNECT_TIMEOUT = 10.0
MAX_RETRY_AFTER = 86400.0


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
            import base64  # (its struct and binascii imports cost a tick without auth)

            pair = f"{self.username}:{self.password or ''}".encode()
            return {"Authorization": f"Basic {base64.b64encode(pair).decode('ascii')}"}
        if self.bearer_token:
            return {"Authorization": f"Bearer {self.bearer_token}"}
        return {}


@functools.cache
def _adapter() -> Any:
    """requests' adapter with connection classes that hand their sockets to the running
    watchdog, built on first use (requests and urllib3 cost ~60 ms to import)."""
    import logging

    from requests.adapters import HTTPAdapter
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    # urllib3 logs every request line at DEBUG, path included, and a Slack webhook's path is
    # its secret. Nothing in `incident` turns DEBUG on, but a user handler or a test might.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.INFO)

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

    pools = {"http": _Pool, "https": _TLSPool}

    class _Adapter(HTTPAdapter):
        def init_poolmanager(
            self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
        ) -> None:
            super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
            self.poolmanager.pool_classes_by_scheme = dict(pools)

        def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
            manager = super().proxy_manager_for(proxy, **proxy_kwargs)
            # An HTTP proxy: the same connection classes. A SOCKS proxy keeps its own (its
            # connections are bounded by the per-read timeouts only).
            if not proxy.lower().startswith("socks"):
                manager.pool_classes_by_scheme = dict(pools)
            return manager

    return _Adapter


def new_session() -> requests.Session:
    """A session whose exchanges can be cut off at their deadline."""
    import requests

    session = requests.Session()
    _mount(session)
    return session


def _mount(session: requests.Session) -> None:
    adapter = _adapter()
    if not isinstance(session.get_adapter("http://x"), adapter):
        session.mount("http://", adapter())
    if not isinstance(session.get_adapter("https://x"), adapter):
        session.mount("https://", adapter())


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
    sent = {**(credentials.headers() if credentials else {}), **(headers or {})}
    if session is None and method == "GET" and json_body is None and "requests" not in sys.modules:
        target = _plain_target(url, params, sent)
        if target is not None:
            started = time.monotonic()
            try:
                return _plain_exchange(*target, sent, timeout, body_limit, over_limit)
            except http1.Unusual:
                # An answer in a form only a full client reads as requests does: the GET is
                # asked again through requests, within what is left of the same deadline.
                left = timeout - (time.monotonic() - started)
                if left <= 0:
                    raise _timed_out(timeout) from None
                timeout = left
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
            headers=sent,
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
    import requests
    import urllib3

    if verify is False:
        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    sent_headers = {"User-Agent": USER_AGENT, **headers}
    timed_out = _timed_out(timeout)
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
            # A read timeout is the whole timeout after the connect: past the deadline, even
            # when it fires just before the watchdog does.
            late = watchdog.expired or isinstance(exc, requests.exceptions.ReadTimeout)
            raise (timed_out if late else HTTPFailure(describe_error(exc))) from None
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
    import requests

    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS error"
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return "connection timed out"
    if isinstance(exc, requests.exceptions.Timeout):
        return "timed out"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return _connection_reason(str(exc))
    return exc.__class__.__name__


def _connection_reason(text: str) -> str:
    text = text.lower()
    if "refused" in text:
        return "connection refused"
    if "name or service not known" in text or "nodename nor servname" in text:
        return "host not found"
    return "connection failed"


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


# --------------------------------------------------------------------------- plain HTTP
#
# A GET over plain http:// with no session, no proxy and no .netrc in play, in a process that
# has not imported requests yet, is sent by `incident_cli.http1` over a bare socket: an idle
# tick's source reads are such GETs, and importing requests with urllib3 would cost more than
# the rest of the tick (and http.client, with email's parser and ssl, a tenth of it). (Once
# requests is imported there is nothing to save, and every exchange goes through it.) On the
# wire it is what requests sends (its default headers, then ours; the parameters encoded as
# requests encodes them), and the answer is framed as http.client frames it for requests and
# read the same way: the same watchdog and deadline, the same body cap, gzip and deflate
# decoded as urllib3 decides, and the same HTTPFailure reasons. Anything else — https, a
# session, a body, credentials in the URL, a proxy variable, a .netrc file, a character
# requests would re-quote, a header name that is not a token — goes through requests. So does
# an answer in a form the bare reader does not take (`http1.Unusual`): the GET is asked again
# through requests within the same deadline.

_PLAIN_URL = re.compile(
    r"http://([a-z0-9](?:[a-z0-9.-]*[a-z0-9])?)(?::([0-9]{1,5}))?"
    r"((?:/(?:[A-Za-z0-9._~!$&'()*+,;=:@/-]|%[0-9A-Fa-f]{2})*)?"
    r"(?:\?(?:[A-Za-z0-9._~!$&'()*+,;=:@/?-]|%[0-9A-Fa-f]{2})*)?)"
)
_PLAIN_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_PLAIN_HEADER = re.compile(r"[!-~](?:[ -~]*[!-~])?")
# requests' own defaults (Accept-Encoding as urllib3 offers it without brotli or zstd).
_DEFAULT_HEADERS = {"Accept-Encoding": "gzip, deflate", "Accept": "*/*", "Connection": "keep-alive"}


def _plain_target(
    url: str, params: Mapping[str, str] | None, headers: Mapping[str, str]
) -> tuple[str, int, str] | None:
    """(host, port, path with query) when the exchange may go by the plain path, else None."""
    match = _PLAIN_URL.fullmatch(url)
    if match is None or not all(
        _PLAIN_NAME.fullmatch(k) and _PLAIN_HEADER.fullmatch(v) for k, v in headers.items()
    ):
        return None
    if any(
        v and k.lower().endswith("_proxy") and k.lower() != "no_proxy"
        for k, v in os.environ.items()
    ):
        return None
    if os.environ.get("NETRC") or any(
        os.path.exists(os.path.expanduser(name)) for name in ("~/.netrc", "~/_netrc")
    ):
        return None  # requests would send the .netrc's credentials
    host, port, path = match.group(1), int(match.group(2) or 80), match.group(3) or "/"
    if not path.startswith("/"):
        path = "/" + path  # "http://h?x" as requests sends it
    if params:
        from urllib.parse import urlencode

        query = urlencode([(k, v.encode()) for k, v in params.items()], doseq=True)
        if query:
            path += ("&" if "?" in path else "?") + query
    if not 0 < port < 65536:
        return None
    return host, port, path


def _plain_exchange(
    host: str,
    port: int,
    path: str,
    headers: Mapping[str, str],
    timeout: float,
    body_limit: int,
    over_limit: str,
) -> Reply:
    timed_out = _timed_out(timeout)
    if timeout <= 0:
        raise timed_out
    sent = {**_DEFAULT_HEADERS, "User-Agent": USER_AGENT}
    for name, value in headers.items():  # case-insensitively, as requests merges them
        sent = {k: v for k, v in sent.items() if k.lower() != name.lower()}
        sent[name] = value
    with wall_clock(timeout) as watchdog:
        try:
            sock = http1.connect(host, port, min(timeout, CONNECT_TIMEOUT))
        except OSError as exc:
            raise (timed_out if watchdog.expired else HTTPFailure(_connect_error(exc))) from None
        try:
            adopt_socket(sock)
            sock.settimeout(timeout)
            try:
                answer = http1.get(sock, host, port, path, sent)
            except (OSError, http1.FramingError) as exc:
                # A read timeout is the whole timeout after the connect: past the deadline.
                if watchdog.expired or isinstance(exc, TimeoutError):
                    raise timed_out from None
                raise HTTPFailure("connection failed") from None
            body = _plain_body(answer, body_limit, over_limit, watchdog, timed_out)
        finally:
            sock.close()
        if watchdog.expired:
            raise timed_out
    retry_after = parse_retry_after(answer.headers.get("retry-after"), time.time())
    return Reply(answer.status, body, retry_after)


def _connect_error(exc: OSError) -> str:
    """What `describe_error` says of a connection requests could not make."""
    return "connection timed out" if isinstance(exc, TimeoutError) else _connection_reason(str(exc))


def _timed_out(timeout: float) -> HTTPFailure:
    return HTTPFailure(f"timed out after {round(max(timeout, 0.0), 1):g}s", timed_out=True)


def _plain_body(
    answer: http1.Response,
    limit: int,
    over_limit: str,
    watchdog: Watchdog,
    timed_out: HTTPFailure,
) -> bytearray:
    """The body as `_read_body` reads it: decoded, at most `limit` bytes (a compressed body is
    never inflated much past the limit: a small answer can hold gigabytes of zeros)."""
    # urllib3's choice: the header's value as it is (not stripped), lower-cased.
    encoding = answer.headers.get("content-encoding", "").lower()
    decoder: Any = None
    if encoding in ("gzip", "x-gzip"):
        decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif encoding == "deflate":
        decoder = _Deflate()
    body = bytearray()
    try:
        while len(body) <= limit and not watchdog.expired:
            chunk = answer.read1(65536)
            if not chunk:
                if decoder is not None:
                    body += decoder.flush()
                return body
            if decoder is None:
                body += chunk
                continue
            body += decoder.decompress(chunk, limit + 1 - len(body))
            if decoder.unused_data:
                raise http1.Unusual("data after the end of the compressed body")
    except zlib.error:
        raise HTTPFailure("answered with a body that cannot be decoded") from None
    except (OSError, http1.FramingError) as exc:
        if watchdog.expired or isinstance(exc, TimeoutError):
            raise timed_out from None
        # urllib3 reports every break mid-body as its ProtocolError; so does this.
        raise HTTPFailure("connection broke while reading (ProtocolError)") from None
    if watchdog.expired:
        raise timed_out
    if len(body) > limit:
        if over_limit == "fail":
            raise HTTPFailure(f"response larger than {_size(limit)}")
        del body[limit:]
    return body


class _Deflate:
    """Content-Encoding: deflate as urllib3 reads it: zlib-wrapped, else raw deflate (and, as
    urllib3 does, whatever follows the end of the stream ignored)."""

    unused_data = b""

    def __init__(self) -> None:
        self._obj: Any = zlib.decompressobj()
        self._seen: bytes | None = b""  # None once the first bytes decoded

    def decompress(self, data: bytes, max_length: int) -> bytes:
        if self._seen is None:
            return bytes(self._obj.decompress(data, max_length))
        self._seen += data
        try:
            out = bytes(self._obj.decompress(data, max_length))
        except zlib.error:
            self._obj, seen, self._seen = zlib.decompressobj(-zlib.MAX_WBITS), self._seen, None
            return bytes(self._obj.decompress(seen, max_length))
        if out:
            self._seen = None
        return out

    def flush(self) -> bytes:
        return bytes(self._obj.flush())
