"""HTTP/1.1 GET request and response framing over a socket.

The request is written as http.client writes it and the answer read as http.client reads it
(for requests too), without importing http.client, which pulls in email's parser and ssl.

The answer: a status line `HTTP/1.x NNN reason` (100 Continue skipped with its headers; any
other 1xx is the answer, without a body, as http.client has it); at most 99 header lines (100
with the blank line that ends them, as http.client counts), each line at most 65,536 bytes;
an obsolete line fold joined with one space, the same field twice joined with ", " (as
requests reads them). The body: chunked (the last transfer coding; `;extensions` ignored,
trailers read and dropped) before Content-Length, then Content-Length, none for 204, 304 and
1xx, else up to the end of the connection. Reading stops at the end of a framed body, since
the server may keep the connection open. An answer http.client and requests would refuse too
is a FramingError; socket errors (OSError) come through as they are.

Only the usual forms are read here: an answer that http.client would take but frames in a way
this reader does not copy (a status line such as `HTTP/1.10 200` or `0200`, a header line that
is not a field, a Transfer-Encoding other than exactly `chunked`, a Content-Length that is not
plain digits or that disagrees with itself, a Content-Encoding that lists several codings, a
chunk size such as `0x1a`, a chunk not followed by CRLF) raises Unusual: the caller asks
again through requests, so such an answer reads exactly as requests reads it.
"""

from __future__ import annotations

import contextlib
import re
import socket
from collections.abc import Mapping

MAX_LINE = 65536  # a status, header, chunk-size or trailer line, its line end included
MAX_HEADERS = 100  # header lines, the blank line that ends them counted

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_VALUE = re.compile(r"[!-~](?:[ -~]*[!-~])?|")
_TARGET = re.compile(r"/[!-~]*")
_VERSION = re.compile(r"HTTP/(?:1\.[0-9]|0\.9)")
_STATUS = re.compile(r"[1-9][0-9][0-9]")
_LENGTH = re.compile(r"[0-9]{1,18}")
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")


class FramingError(Exception):
    """The peer's bytes are not an HTTP/1.x answer, or the body ended short of its framing."""


class Unusual(Exception):
    """An answer in a form this reader does not take (see the module's doc): ask again
    through a full client. Never a failure of the exchange itself."""


def connect(host: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection as http.client opens one. The host goes to the resolver as ASCII bytes,
    so the idna codec is not imported; `host` must be ASCII."""
    # getaddrinfo takes bytes too (typeshed says str): a str host is encoded by the idna codec.
    sock = socket.create_connection((host.encode("ascii"), port), timeout)  # type: ignore[arg-type]
    with contextlib.suppress(OSError):  # an optimisation only, as http.client has it
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def request(host: str, port: int, target: str, headers: Mapping[str, str]) -> bytes:
    """`GET target` as http.client writes it: the Host field first (the port left out when it
    is 80) unless `headers` has one, then `headers` in their order. ValueError for a name,
    value or target that cannot go on the wire as it is."""
    if not _TARGET.fullmatch(target):
        raise ValueError("not a request target")
    lines = [f"GET {target} HTTP/1.1"]
    if not any(name.lower() == "host" for name in headers):
        lines.append(f"Host: {host}" if port == 80 else f"Host: {host}:{port}")
    for name, value in headers.items():
        if not _TOKEN.fullmatch(name) or not _VALUE.fullmatch(value):
            raise ValueError("not a header field")
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def get(
    sock: socket.socket, host: str, port: int, target: str, headers: Mapping[str, str]
) -> Response:
    """Send the GET on a connected socket and read the answer's status line and headers."""
    sock.sendall(request(host, port, target, headers))
    return Response(sock)


class Response:
    """One answer: `status`, `headers` (lower-case names), and the body by `read1`."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = bytearray()
        while True:
            status = self._status_line()
            lines = self._header_lines()
            if status != 100:
                break
        self.status = status
        self.headers = _fields(lines)
        coding = self.headers.get("transfer-encoding")
        if coding is not None and coding.lower() != "chunked":
            raise Unusual("transfer coding")
        if "," in self.headers.get("content-encoding", ""):
            raise Unusual("content codings")
        self._chunked = coding is not None
        self._chunk: int | None = None  # chunked: left of this chunk; None before the first
        self._length = None if self._chunked else _content_length(self.headers)
        if status in (204, 304) or status < 200:
            self._chunked, self._length = False, 0
        self._ended = False

    def read1(self, size: int = 65536) -> bytes:
        """The next part of the body, at most `size` bytes (what one read brings); b"" at its
        end. FramingError when it ends short of its framing."""
        if self._ended:
            return b""
        if self._chunked:
            if not self._chunk:
                self._next_chunk()
                if self._ended:
                    return b""
            assert self._chunk
            data = self._some(min(size, self._chunk))
            if not data:
                raise FramingError("the connection closed in the middle of a chunk")
            self._chunk -= len(data)
            return data
        want = size if self._length is None else min(size, self._length)
        data = self._some(want) if want else b""
        if self._length is not None:
            if want and not data:
                raise FramingError("the connection closed before the Content-Length")
            self._length -= len(data)
        self._ended = not data or self._length == 0
        return data

    # ----------------------------------------------------------------------- the head

    def _status_line(self) -> int:
        line = self._line()
        if not line:
            raise FramingError("the connection closed without an answer")
        parts = line.decode("latin-1").split(None, 2)
        if len(parts) >= 2 and _VERSION.fullmatch(parts[0]) and _STATUS.fullmatch(parts[1]):
            return int(parts[1])
        if _http_client_takes(parts):
            raise Unusual("status line")
        raise FramingError("not an HTTP/1.x status line")

    def _header_lines(self) -> list[bytes]:
        lines: list[bytes] = []
        while True:
            line = self._line()
            if line in (b"\r\n", b"\n", b""):
                return lines
            lines.append(line)
            if len(lines) >= MAX_HEADERS:  # with the line that would end them, one too many
                raise FramingError(f"{MAX_HEADERS} header lines or more")

    # ----------------------------------------------------------------------- chunks

    def _next_chunk(self) -> None:
        if self._chunk == 0:  # the line end after a chunk's data
            end = self._some(2)
            while 0 < len(end) < 2 and (more := self._some(2 - len(end))):
                end += more
            if len(end) < 2:
                raise FramingError("the connection closed after a chunk")
            if end != b"\r\n":
                # http.client drops these two bytes unread: it may frame the rest otherwise.
                raise Unusual("a chunk not followed by CRLF")
        size = self._line().split(b";", 1)[0].strip()
        if not _CHUNK_SIZE.fullmatch(size):
            try:
                int(size, 16)  # what http.client reads a chunk size with
            except ValueError:
                raise FramingError("invalid chunk size") from None
            raise Unusual("chunk size")
        self._chunk = int(size, 16)
        if self._chunk == 0:
            while self._line() not in (b"\r\n", b"\n", b""):
                pass  # a trailer field: dropped
            self._ended = True

    # ----------------------------------------------------------------------- the socket

    def _line(self) -> bytes:
        """The next line with its line end; what is left at the end of the connection."""
        start = 0
        while True:
            end = self._buffer.find(b"\n", start)
            if end >= 0:
                if end >= MAX_LINE:
                    raise FramingError("a line longer than 65536 bytes")
                line = bytes(self._buffer[: end + 1])
                del self._buffer[: end + 1]
                return line
            if len(self._buffer) > MAX_LINE:
                raise FramingError("a line longer than 65536 bytes")
            start = len(self._buffer)
            data = self._sock.recv(65536)
            if not data:
                line = bytes(self._buffer)
                self._buffer.clear()
                return line
            self._buffer += data

    def _some(self, size: int) -> bytes:
        """At most `size` bytes: what is buffered, else what one read brings (b"" at the end)."""
        if self._buffer:
            data = bytes(self._buffer[:size])
            del self._buffer[:size]
            return data
        return self._sock.recv(size)


def _fields(lines: list[bytes]) -> dict[str, str]:
    """Header lines → {lower-case name: value}, as requests reads them through http.client and
    email: a line folded onto the next joined with one space, the same name twice joined with
    ", ". A line that is not a field is Unusual (email's parser has rules of its own for it)."""
    pairs: list[tuple[str, str]] = []
    for raw in lines:
        line = raw.decode("latin-1").rstrip("\r\n")
        if line[:1] in (" ", "\t"):
            if not pairs:
                raise Unusual("a folded line with no field before it")
            name, value = pairs[-1]
            pairs[-1] = (name, value.rstrip(" \t") + " " + line.lstrip(" \t"))
            continue
        name, colon, value = line.partition(":")
        if not colon or not _TOKEN.fullmatch(name):
            raise Unusual("a header line that is not a field")
        pairs.append((name.lower(), value.lstrip(" \t")))
    found: dict[str, str] = {}
    for name, value in pairs:
        found[name] = f"{found[name]}, {value}" if name in found else value
    return found


def _content_length(headers: Mapping[str, str]) -> int | None:
    """Content-Length: None when there is none; Unusual unless it is plain digits, or the
    same plain digits repeated."""
    if "content-length" not in headers:
        return None
    values = {v.strip(" \t") for v in headers["content-length"].split(",")}
    if len(values) != 1 or not _LENGTH.fullmatch(next(iter(values))):
        raise Unusual("content length")
    return int(next(iter(values)))


def _http_client_takes(parts: list[str]) -> bool:
    """Whether http.client would take a status line split as `parts` (which the strict form
    above did not): `HTTP/1.` anything or `HTTP/0.9`, and a status int() reads as 100-999."""
    if len(parts) < 2 or not (parts[0].startswith("HTTP/1.") or parts[0] == "HTTP/0.9"):
        return False
    try:
        return 100 <= int(parts[1]) <= 999
    except ValueError:
        return False
