"""A slow-loris peer, run as its own process: it accepts every connection, reads the request,
then sends the start of an answer one byte a second and never finishes it.

    python tests/support/slow_peer.py [http|smtp|https CERT KEY]

prints the port it listens on (127.0.0.1), then serves until killed. `http` drips a status line
and headers that never end, `https` the same after a TLS handshake; `smtp` drips a greeting
line that never ends.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import sys
import threading
import time

START = {
    "http": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Slow: ",
    "https": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Slow: ",
    "smtp": b"220 slow.example.com ",
}
INTERVAL = 1.0


def drip(conn: socket.socket, start: bytes, tls: ssl.SSLContext | None) -> None:
    try:
        conn.settimeout(2)
        if tls is not None:
            conn = tls.wrap_socket(conn, server_side=True)
        with contextlib.suppress(TimeoutError):
            conn.recv(65536)  # the request (an SMTP client sends nothing first)
        data = start + b"a" * 100_000
        for index in range(len(data)):
            conn.sendall(data[index : index + 1])
            time.sleep(INTERVAL)
    except OSError:
        pass
    finally:
        conn.close()


def main() -> None:
    mode = sys.argv[1] if len(sys.argv) > 1 else "http"
    tls = None
    if mode == "https":
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(sys.argv[2], sys.argv[3])
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    sys.stdout.write(f"{server.getsockname()[1]}\n")
    sys.stdout.flush()
    while True:
        conn, _ = server.accept()
        threading.Thread(target=drip, args=(conn, START[mode], tls), daemon=True).start()


if __name__ == "__main__":
    main()
