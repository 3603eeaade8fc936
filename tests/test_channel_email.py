"""Email: a real SMTP server (aiosmtpd) on loopback, STARTTLS and implicit TLS with login.

The TLS tests make a self-signed certificate for 127.0.0.1 with the `openssl` command and
point SSL_CERT_FILE at it, so the client verifies the server exactly as it would a real one.
"""

from __future__ import annotations

import email
import email.policy
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.support.notify import (
    T0,
    FakeClock,
    Setup,
    alert,
    closed_port,
    deliver,
    make_setup,
)
from tests.support.notify import resolve as resolve_incident
from tests.support.notify import rows as notification_rows

pytestmark = pytest.mark.usefixtures("both_backends")

PASSWORD = "smtp-Pa55word-very-secret"


@dataclass
class Mailbox:
    messages: list[Any] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)
    rcpt_reply: str = "250 OK"
    data_reply: str = "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if self.rcpt_reply.startswith("250"):
            envelope.rcpt_tos.append(address)
        return self.rcpt_reply

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_reply.startswith("250"):
            self.messages.append(
                email.message_from_bytes(envelope.content, policy=email.policy.default)
            )
        return self.data_reply

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        if isinstance(data, LoginPassword):
            login, password = data.login.decode(), data.password.decode()
            self.logins.append((login, password))
            return AuthResult(success=login == "ops" and password == PASSWORD, handled=False)
        return AuthResult(success=False, handled=False)


@contextmanager
def smtp_server(mailbox: Mailbox, **kwargs: Any) -> Iterator[int]:
    port = closed_port()
    controller = Controller(
        mailbox, hostname="127.0.0.1", port=port, authenticator=mailbox.authenticate, **kwargs
    )
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


def _setup(tmp_path: Path, port: int, extra: str) -> Setup:
    spec = (
        f"{{type: email, host: 127.0.0.1, port: {port}, from: incidents@example.com,"
        f" to: [oncall@example.com, boss@example.com], timeout: 5s{extra}}}"
    )
    return make_setup(tmp_path, {"mail": spec}, ["mail"])


def _server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def test_starttls_with_login_delivers_a_plain_text_message(
    tmp_path: Path, certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = certificate
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    mailbox = Mailbox()
    with smtp_server(
        mailbox,
        tls_context=_server_context(cert, key),
        require_starttls=True,
        auth_require_tls=True,
    ) as port:
        setup = _setup(tmp_path, port, f", starttls: true, username: ops, password: {PASSWORD}")
        setup.fire([alert(service="backend")])
        report = deliver(setup)

    assert report.count("sent") == 1, report
    assert mailbox.logins == [("ops", PASSWORD)]
    (mail,) = mailbox.messages
    assert mail["Subject"] == "[FIRING critical] BackendServiceDown: backend (incident 1)"
    assert mail["From"] == "incidents@example.com"
    assert mail["To"] == "oncall@example.com, boss@example.com"
    assert mail.get_content_type() == "text/plain"
    assert mail.get_content().replace("\r\n", "\n") == (
        "[FIRING] BackendServiceDown: backend\n"
        "Severity: critical\n"
        "Incident: 1\n"
        "Summary: BackendServiceDown is firing\n"
        "Labels:\n"
        "  alertname=BackendServiceDown\n"
        "  service=backend\n"
        "Runbook: https://runbooks.example.com/backend-down\n"
        "Grafana: https://grafana.example.com/d/abc\n"
        "Acknowledge: incident ack 1\n"
    )


def test_implicit_tls_delivers_and_the_subject_names_the_resolution(
    tmp_path: Path, certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = certificate
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    mailbox = Mailbox()
    # aiosmtpd only counts STARTTLS as TLS when deciding whether to offer AUTH; this
    # connection is TLS from the first byte, so that check is switched off.
    with smtp_server(
        mailbox, ssl_context=_server_context(cert, key), auth_require_tls=False
    ) as port:
        setup = _setup(tmp_path, port, f", tls: true, username: ops, password: {PASSWORD}")
        setup.fire([alert(service="backend")])
        resolve_incident(setup, 1)
        report = deliver(setup, FakeClock(T0 + 200))

    assert report.count("sent") == 2, report
    assert [m["Subject"] for m in mailbox.messages] == [
        "[FIRING critical] BackendServiceDown: backend (incident 1)",
        "[RESOLVED critical] BackendServiceDown: backend (incident 1)",
    ]
    assert "Resolution: manual." in mailbox.messages[1].get_content()


def test_an_untrusted_certificate_is_refused(
    tmp_path: Path, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    mailbox = Mailbox()
    with smtp_server(
        mailbox, tls_context=_server_context(cert, key), require_starttls=True
    ) as port:
        setup = _setup(tmp_path, port, ", starttls: true")
        setup.fire([alert(service="backend")])
        report = deliver(setup)

    assert report.dead[0].error == "email: TLS certificate not trusted"
    assert mailbox.messages == []


def test_a_wrong_password_is_a_dead_letter(
    tmp_path: Path, certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = certificate
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    mailbox = Mailbox()
    with smtp_server(mailbox, tls_context=_server_context(cert, key)) as port:
        setup = _setup(tmp_path, port, ", starttls: true, username: ops, password: WRONG-one")
        setup.fire([alert(service="backend")])
        report = deliver(setup)

    assert report.count("dead") == 1
    assert report.dead[0].error is not None
    assert report.dead[0].error.startswith("email: SMTP 535")
    assert "WRONG-one" not in str(notification_rows(setup))


def test_a_refused_recipient_is_permanent_and_a_busy_server_is_retried(tmp_path: Path) -> None:
    mailbox = Mailbox(rcpt_reply="550 no such user")
    with smtp_server(mailbox) as port:
        setup = _setup(tmp_path, port, "")
        setup.fire([alert(service="backend")])
        assert deliver(setup).dead[0].error == "email: recipients refused (SMTP 550)"

    mailbox = Mailbox(data_reply="451 try again later")
    with smtp_server(mailbox) as port:
        (tmp_path / "2").mkdir()
        setup = _setup(tmp_path / "2", port, "")
        setup.fire([alert(service="backend")])
        report = deliver(setup)
    assert report.count("retry") == 1
    assert report.outcomes[0].error == "email: SMTP 451: try again later"


def test_nobody_listening_is_retried(tmp_path: Path) -> None:
    setup = _setup(tmp_path, closed_port(), "")
    setup.fire([alert(service="backend")])
    report = deliver(setup)
    assert report.count("retry") == 1
    assert report.outcomes[0].error == "email: connection refused"


def test_a_label_value_cannot_inject_headers_or_recipients(tmp_path: Path) -> None:
    mailbox = Mailbox()
    with smtp_server(mailbox) as port:
        setup = _setup(tmp_path, port, "")
        setup.fire([alert(service="backend\r\nBcc: evil@example.com\r\n\r\nfake body")])
        report = deliver(setup)

    assert report.count("sent") == 1, report
    (mail,) = mailbox.messages
    assert mail["Bcc"] is None
    assert "\n" not in mail["Subject"]
    assert mail["Subject"].startswith("[FIRING critical] BackendServiceDown: backend Bcc:")
    body = mail.get_content()
    assert "  service=backend Bcc: evil@example.com fake body" in body.replace("\r\n", "\n")
