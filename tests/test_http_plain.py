"""http.py's plain path (a GET over http:// on a bare socket by http1.py, in a process without
requests) is the same exchange as requests makes: the same request on the wire, the same Reply,
the same HTTPFailure reasons. Each case runs `exchange` twice in a fresh interpreter against the
same raw server: once as an idle tick does (requests never imported), once with requests
imported (which sends every exchange through requests)."""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.binaries import cli_env, free_port

EXCHANGE = """
import json, sys
if sys.argv[1] == "requests":
    import requests  # noqa: F401
from incident_cli.http import Credentials, HTTPFailure, exchange
kwargs = json.loads(sys.argv[3])
creds = kwargs.pop("credentials", None)
try:
    reply = exchange("GET", sys.argv[2], credentials=Credentials(**creds) if creds else None, **kwargs)
    out = {"status": reply.status, "body": bytes(reply.body).decode("latin-1"), "retry_after": reply.retry_after}
except HTTPFailure as exc:
    out = {"failure": exc.reason, "timed_out": exc.timed_out}
out["requests"] = "requests" in sys.modules
print(json.dumps(out))
"""


class RawServer:
    """Answers each connection with fixed bytes (then closes, or keeps the connection open as a
    keep-alive server does, or stalls); records requests."""

    def __init__(self, answer: bytes, *, stall: bool = False, keep_open: bool = False) -> None:
        self.answer, self.stall, self.keep_open = answer, stall, keep_open
        self.requests: list[bytes] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.open: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.open.append(conn)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                head += chunk
            self.requests.append(head)
            if self.stall:
                continue
            conn.sendall(self.answer)
            if not self.keep_open:
                conn.close()

    def close(self) -> None:
        self.sock.close()
        for conn in self.open:
            conn.close()


@contextmanager
def raw_server(
    answer: bytes, *, stall: bool = False, keep_open: bool = False
) -> Iterator[RawServer]:
    server = RawServer(answer, stall=stall, keep_open=keep_open)
    try:
        yield server
    finally:
        server.close()


def python_in(tmp_path: Path, code: str, *args: str) -> dict[str, object]:
    """What `code` printed as JSON, run in a fresh interpreter (requests not imported)."""
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=tmp_path,
        env=cli_env({"HOME": str(tmp_path)}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


def exchange_in(mode: str, url: str, tmp_path: Path, **kwargs: object) -> dict[str, object]:
    return python_in(tmp_path, EXCHANGE, mode, url, json.dumps(kwargs))


def both(url: str, tmp_path: Path, **kwargs: object) -> dict[str, object]:
    """The result of both paths, checked equal; the plain one never imported requests."""
    plain = exchange_in("plain", url, tmp_path, **kwargs)
    full = exchange_in("requests", url, tmp_path, **kwargs)
    assert plain.pop("requests") is False
    assert full.pop("requests") is True
    assert plain == full
    return plain


def response(body: bytes, *headers: str, status: str = "200 OK", version: str = "1.1") -> bytes:
    lines = [f"HTTP/{version} {status}", *headers]
    framed = any(h.lower().startswith(("content-length", "transfer-encoding")) for h in headers)
    if version == "1.1" and not framed:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def chunked(body: bytes, size: int = 7) -> bytes:
    parts = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


BODY = json.dumps({"status": "success", "data": {"alerts": [{"x": "ü" * 50}]}}).encode()
GZIP = gzip.compress(BODY)


@pytest.mark.parametrize(
    ("answer", "kwargs", "expected"),
    [
        (response(BODY), {}, {"status": 200, "body": BODY.decode("latin-1")}),
        (response(GZIP, "Content-Encoding: gzip"), {}, {"body": BODY.decode("latin-1")}),
        (response(zlib.compress(BODY), "Content-Encoding: deflate"), {}, {"status": 200}),
        (
            response(zlib.compress(BODY)[2:-4], "Content-Encoding: deflate"),  # raw deflate
            {},
            {"body": BODY.decode("latin-1")},
        ),
        (response(chunked(BODY), "Transfer-Encoding: chunked"), {}, {"status": 200}),
        (response(BODY, version="1.0"), {}, {"body": BODY.decode("latin-1")}),  # till close
        (response(b"busy", "Retry-After: 120", status="503 Busy"), {}, {"retry_after": 120.0}),
        (response(b"x" * 5000), {"body_limit": 1024}, {"body": "x" * 1024}),
        (response(b"x" * 5000), {"body_limit": 1024, "over_limit": "fail"}, {}),
        (response(b"{}"), {"body_limit": 0}, {"body": ""}),
        (response(b"not gzip", "Content-Encoding: gzip"), {}, {}),
        (response(b"", "Location: /elsewhere", status="302 Found"), {}, {"status": 302}),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", {}, {}),  # cut mid-body
        (b"garbage\r\n\r\n", {}, {}),
        (b"", {}, {}),  # closed without a word
    ],
    ids=[
        "plain",
        "gzip",
        "deflate",
        "raw-deflate",
        "chunked",
        "http-1.0",
        "retry-after",
        "cut",
        "fail-over-cap",
        "probe",
        "bad-gzip",
        "redirect-not-followed",
        "short-body",
        "garbage",
        "no-answer",
    ],
)
def test_the_plain_path_answers_as_requests_does(
    answer: bytes, kwargs: dict[str, object], expected: dict[str, object], tmp_path: Path
) -> None:
    with raw_server(answer) as server:
        result = both(server.url + "/api/v1/alerts", tmp_path, timeout=10, **kwargs)
    assert expected.items() <= result.items()


def extended_chunks(body: bytes) -> bytes:
    """Chunked with upper-case hex sizes, chunk extensions and trailers."""
    parts = [body[i : i + 26] for i in range(0, len(body), 26)]
    framed = b"".join(b'%X;ext=1;q="a;b"\r\n%s\r\n' % (len(p), p) for p in parts)
    return framed + b"0;last\r\nX-Trailer: 1\r\nX-Other: 2\r\n\r\n"


HEAD_ONLY = "HTTP/1.1 {}\r\n\r\n"
MANY = [f"X-H{i}: {i}" for i in range(98)]  # with Content-Length: 99 lines, 100 with the blank
LONG = "X-Long: " + "a" * (65536 - len("X-Long: ") - 2)  # 65536 bytes with its CRLF


@pytest.mark.parametrize(
    ("answer", "keep_open", "expected"),
    [
        (response(extended_chunks(BODY), "Transfer-Encoding: chunked"), True, {"status": 200}),
        (
            response(extended_chunks(GZIP), "Transfer-Encoding: chunked", "Content-Encoding: gzip"),
            True,
            {"body": BODY.decode("latin-1")},
        ),
        (b"HTTP/1.1 100 Continue\r\nX-A: 1\r\n\r\n" + response(BODY), True, {"status": 200}),
        (HEAD_ONLY.format("204 No Content").encode(), True, {"status": 204, "body": ""}),
        (HEAD_ONLY.format("304 Not Modified").encode(), True, {"status": 304, "body": ""}),
        (HEAD_ONLY.format("103 Early Hints").encode() + response(BODY), True, {"status": 103}),
        (response(BODY), True, {"body": BODY.decode("latin-1")}),
        (response(BODY + b"extra", f"Content-Length: {len(BODY)}"), True, {"status": 200}),
        (response(BODY, f"Content-Length: {len(BODY)}", version="1.0"), True, {"status": 200}),
        (response(GZIP, "Content-Encoding: gzip"), True, {"body": BODY.decode("latin-1")}),
        (
            response(chunked(BODY), "Content-Length: 3", "Transfer-Encoding: chunked"),
            True,
            {"body": BODY.decode("latin-1")},
        ),
        (
            response(BODY, "X-Note: a", " folded", "Retry-After:", "\t120"),
            False,
            {"retry_after": 120.0},
        ),
        (
            response(b"x", "Retry-After: 120", "Retry-After: 120", status="429 No"),
            False,
            {"status": 429, "retry_after": None},  # "120, 120", as requests joins them
        ),
        (response(b"x", "Content-Length: 1", "Content-Length: 1"), True, {"body": "x"}),
        # urllib3 takes Content-Encoding as it is: with a space after it, no decoding.
        (response(GZIP, "Content-Encoding: gzip "), True, {"body": GZIP.decode("latin-1")}),
        (response(BODY, *MANY), True, {"status": 200}),
        (response(BODY, *MANY, "X-One-Too-Many: 1"), True, {"failure": "connection failed"}),
        (response(BODY, LONG), True, {"status": 200}),
        (response(BODY, LONG + "a"), True, {"failure": "connection failed"}),
        (response(b"zz\r\nabc\r\n0\r\n\r\n", "Transfer-Encoding: chunked"), True, {}),
        (response(b"0\r\n" + LONG.encode() + b"a\r\n\r\n", "Transfer-Encoding: chunked"), True, {}),
        (response(b"a\r\nabc", "Transfer-Encoding: chunked"), False, {}),  # cut mid-chunk
        (response(b"3\r\nabc\r\n", "Transfer-Encoding: chunked"), False, {}),  # no last chunk
        (response(b"3\r\nabc\r\n0\r\n", "Transfer-Encoding: chunked"), False, {"body": "abc"}),
        (b"HTTP/1.1 2OO OK\r\n\r\n", False, {"failure": "connection failed"}),
        (b"HTTP/2 200 OK\r\n\r\n", False, {"failure": "connection failed"}),
        (b"HTTP/1.1 099 Low\r\n\r\n", False, {"failure": "connection failed"}),
        (b"HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok", False, {"body": "ok"}),
        (b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok", True, {"body": "ok"}),
    ],
    ids=[
        "chunked-extensions-trailers",
        "chunked-gzip",
        "100-continue",
        "204-kept-open",
        "304-kept-open",
        "103-is-final-as-in-requests",
        "length-kept-open",
        "length-then-extra-bytes",
        "http-1.0-length-kept-open",
        "gzip-kept-open",
        "chunked-over-length",
        "obs-fold",
        "retry-after-twice",
        "length-twice",
        "content-encoding-with-space",
        "99-header-lines",
        "100-header-lines",
        "longest-header-line",
        "header-line-too-long",
        "invalid-chunk-size",
        "trailer-line-too-long",
        "cut-mid-chunk",
        "no-last-chunk",
        "no-trailer-end",
        "status-not-digits",
        "http-2-status-line",
        "status-below-100",
        "no-reason",
        "bare-line-feeds",
    ],
)
def test_the_plain_path_frames_the_answer_as_requests_does(
    answer: bytes, keep_open: bool, expected: dict[str, object], tmp_path: Path
) -> None:
    """Stops at the end of a framed body although the server keeps the connection open."""
    with raw_server(answer, keep_open=keep_open) as server:
        result = both(server.url + "/api/v1/alerts", tmp_path, timeout=10)
    assert expected.items() <= result.items()
    if not expected:
        assert result == {
            "failure": "connection broke while reading (ProtocolError)",
            "timed_out": False,
        }


SMALL = b'{"status":"success","data":{"alerts":[]}}'
SMALL_CHUNKED = b"%x\r\n%s\r\n0\r\n\r\n" % (len(SMALL), SMALL)
SMALL_HEAD = b"HTTP/1.1 200 OK\r\n"


@pytest.mark.parametrize(
    ("answer", "keep_open"),
    [
        # email's parser reads a "From " line as an envelope line, not as the end of the head
        (SMALL_HEAD + b"From x\r\nContent-Length: %d\r\n\r\n" % len(SMALL) + SMALL, True),
        (SMALL_HEAD + b"X-A: 1\r\nFrom x\r\nContent-Length: %d\r\n\r\n" % len(SMALL) + SMALL, True),
        (SMALL_HEAD + b"X-A: 1\r\nno colon\r\n\r\n" + SMALL, False),
        (SMALL_HEAD + b": no name\r\n\r\n" + SMALL, False),
        (SMALL_HEAD + b" folded first\r\n\r\n" + SMALL, False),
        (response(SMALL, f"Content-Length: +{len(SMALL)}"), True),  # int() takes a sign
        (response(SMALL, f"Content-Length: {len(SMALL)}", "Content-Length: 3"), False),
        (response(SMALL, "Content-Length: " + "9" * 5000), False),  # past int()'s digit limit
        # http.client dechunks only when the Transfer-Encoding value is exactly "chunked"
        (response(SMALL_CHUNKED, "Transfer-Encoding: gzip, chunked"), False),
        (
            response(SMALL_CHUNKED, "Transfer-Encoding: identity", "Transfer-Encoding: chunked"),
            False,
        ),
        (response(SMALL_CHUNKED, "Transfer-Encoding: chunked "), False),
        (response(SMALL_CHUNKED, "Transfer-Encoding:", " chunked"), False),
        # http.client drops the two bytes after a chunk unread, and reads a size with int(x, 16)
        (
            response(b"%x\r\n%sXX0\r\n\r\n" % (len(SMALL), SMALL), "Transfer-Encoding: chunked"),
            True,
        ),
        (
            response(
                b"0x%x\r\n%s\r\n0\r\n\r\n" % (len(SMALL), SMALL), "Transfer-Encoding: chunked"
            ),
            True,
        ),
        (
            SMALL_HEAD.replace(b"1.1", b"1.10")
            + b"Content-Length: %d\r\n\r\n" % len(SMALL)
            + SMALL,
            False,
        ),
        (
            SMALL_HEAD.replace(b"200", b"0200")
            + b"Content-Length: %d\r\n\r\n" % len(SMALL)
            + SMALL,
            False,
        ),
        (response(gzip.compress(SMALL) + gzip.compress(SMALL), "Content-Encoding: gzip"), False),
        (response(gzip.compress(gzip.compress(SMALL)), "Content-Encoding: gzip, gzip"), False),
        (response(SMALL, "Content-Encoding: identity, gzip"), False),
    ],
    ids=[
        "from-line-first",
        "from-line-later",
        "line-without-colon",
        "line-without-name",
        "fold-with-no-field",
        "length-with-sign",
        "lengths-disagree",
        "length-of-5000-digits",
        "gzip-then-chunked",
        "two-transfer-encodings",
        "chunked-with-space",
        "transfer-encoding-folded",
        "chunk-not-ended-by-crlf",
        "chunk-size-0x",
        "http-1.10",
        "status-0200",
        "two-gzip-members",
        "gzip-twice",
        "identity-then-gzip",
    ],
)
def test_an_answer_the_plain_path_does_not_take_is_asked_again_through_requests(
    answer: bytes, keep_open: bool, tmp_path: Path
) -> None:
    """Forms http.client takes but frames by rules the plain reader does not copy: the plain
    path asks again through requests (a second request), so the answer reads as requests
    reads it."""
    with raw_server(answer, keep_open=keep_open) as server:
        url = server.url + "/api/v1/alerts"
        plain = exchange_in("plain", url, tmp_path, timeout=3)
        asked = len(server.requests)
        full = exchange_in("requests", url, tmp_path, timeout=3)
    assert plain.pop("requests") is True  # the second try went through requests
    assert asked == 2
    assert full.pop("requests") is True
    assert plain == full


BOMB = """
import json, sys, tracemalloc
from incident_cli.http import HTTPFailure, exchange
tracemalloc.start()
reply = exchange("GET", sys.argv[1], timeout=10, body_limit=65536)
print(json.dumps({"peak": tracemalloc.get_traced_memory()[1], "size": len(reply.body),
                  "requests": "requests" in sys.modules}))
"""


def test_a_compressed_body_is_never_inflated_far_past_the_limit(tmp_path: Path) -> None:
    """200 MB of zeros gzipped to ~200 KB, read with a 64 KiB limit: the plain path keeps a
    few MB at most, not the whole inflated chunk."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    packed = b"".join(packer.compress(zeros) for _ in range(200)) + packer.flush()
    with raw_server(response(packed, "Content-Encoding: gzip")) as server:
        result = python_in(tmp_path, BOMB, server.url + "/")
    assert result["requests"] is False
    assert result["size"] == 65536
    assert isinstance(result["peak"], int) and result["peak"] < 8 * 1024 * 1024, result


def test_the_plain_path_sends_what_requests_sends(tmp_path: Path) -> None:
    heads = []
    for mode in ("plain", "requests"):
        with raw_server(response(b"{}")) as server:
            exchange_in(
                mode,
                server.url + "/api/v1/query?x=1",
                tmp_path,
                timeout=10,
                params={"query": 'up{job="a b"} > 0 & ü'},
                headers={"Accept": "application/json"},
                credentials={"username": "ops", "password": "pässwörd€"},
            )
        port = server.url.rsplit(":", 1)[1]
        heads.append(server.requests[0].replace(port.encode(), b"PORT"))
    plain, full = (h.split(b"\r\n") for h in heads)
    assert plain[0] == full[0]  # the request line: path and query encoded alike
    assert sorted(h.lower() for h in plain[1:]) == sorted(h.lower() for h in full[1:])


def test_the_plain_path_keeps_the_deadline_and_the_reasons(tmp_path: Path) -> None:
    with raw_server(b"", stall=True) as server:  # accepts, never answers
        started = time.monotonic()
        result = both(server.url + "/", tmp_path, timeout=1)
        assert time.monotonic() - started < 30
    assert result == {"failure": "timed out after 1s", "timed_out": True}
    refused = both(f"http://127.0.0.1:{free_port()}/", tmp_path, timeout=5)
    assert refused == {"failure": "connection refused", "timed_out": False}


@pytest.mark.parametrize(
    ("url", "env"),
    [
        ("https://127.0.0.1/", {}),
        ("http://user:pw@127.0.0.1/", {}),
        ("http://127.0.0.1/a b", {}),
        ("http://[::1]/", {}),
        ("http://127.0.0.1/", {"HTTP_PROXY": "http://127.0.0.1:9"}),
        ("http://127.0.0.1/", {"all_proxy": "socks5://127.0.0.1:9"}),
        ("http://127.0.0.1/", {"NETRC": "/dev/null"}),
        ("http://127.0.0.1/", {"HOME-NETRC": ""}),
    ],
    ids=["https", "userinfo", "space", "ipv6", "proxy", "all-proxy", "netrc-var", "netrc-file"],
)
def test_what_the_plain_path_does_not_take_goes_through_requests(
    url: str, env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from incident_cli.http import _plain_target

    for key in list(os.environ):
        if key.lower().endswith("_proxy") or key == "NETRC":
            monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert _plain_target("http://127.0.0.1/", None, {}) == ("127.0.0.1", 80, "/")
    for key, value in env.items():
        if key == "HOME-NETRC":
            (tmp_path / ".netrc").write_text("machine 127.0.0.1 login a password b\n")
        else:
            monkeypatch.setenv(key, value)
    assert _plain_target(url, None, {}) is None
    # A header value requests would refuse (or re-encode) goes its way too.
    monkeypatch.delenv("NETRC", raising=False)
    (tmp_path / ".netrc").unlink(missing_ok=True)
    for key in env:
        monkeypatch.delenv(key, raising=False)
    assert _plain_target("http://127.0.0.1/", None, {"Authorization": "Bearer tök"}) is None
    assert _plain_target("http://127.0.0.1/", None, {"X": "a\r\nInjected: 1"}) is None
    assert _plain_target("http://127.0.0.1/", None, {"X Y": "1"}) is None  # not a token
