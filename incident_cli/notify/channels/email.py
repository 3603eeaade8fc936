"""Email over SMTP: plain, STARTTLS or implicit TLS, with login; a plain-text message."""

from __future__ import annotations

import smtplib
import socket
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from incident_cli.http import adopt_socket, wall_clock
from incident_cli.notify.channels.base import (
    Channel,
    Message,
    Outgoing,
    TransportError,
    clip,
    facts_of,
    one_line,
    plain_text,
)
from incident_cli.redact import redact


class EmailChannel(Channel):
    type = "email"
    default_rate_limit = 0.0

    def subject(self, message: Message) -> str:
        facts = facts_of(message)
        subject = f"[{facts.status} {facts.severity}] {one_line(facts.title)}"
        if facts.incident_id is not None:
            subject += f" (incident {facts.incident_id})"
        return clip(subject, 200)

    def build(self, message: Message) -> EmailMessage:
        mail = EmailMessage()
        mail["Subject"] = self.subject(message)
        mail["From"] = str(self.options["from"])
        mail["To"] = ", ".join(self.options["to"])
        mail["Date"] = formatdate(localtime=False, usegmt=True)
        mail["Message-ID"] = make_msgid(domain="incident.local")
        mail.set_content(plain_text(facts_of(message)) + "\n")
        return mail

    def prepare(self, message: Message) -> Outgoing:
        mail = self.build(message)
        scheme = "smtps" if self.options.get("tls") else "smtp"
        url = f"{scheme}://{self.options['host']}:{self.options['port']}"
        return Outgoing(
            "SMTP",
            url,
            {
                "subject": mail["Subject"],
                "to": list(self.options["to"]),
                "text": mail.get_content(),
            },
        )

    def send(self, message: Message, *, within: float | None = None) -> str | None:
        mail = self.build(message)
        host, port = str(self.options["host"]), int(self.options["port"])
        context = ssl.create_default_context()
        limit = self.time_limit(within)
        # Every SMTP step has the socket timeout; the watchdog bounds them all together.
        with wall_clock(limit) as watchdog:
            try:
                self._send(mail, host, port, context, limit)
            except TransportError as exc:
                if watchdog.expired:
                    raise TransportError(f"email: timed out after {round(limit, 1):g}s") from None
                raise exc
        return None

    def _send(
        self,
        mail: EmailMessage,
        host: str,
        port: int,
        context: ssl.SSLContext,
        limit: float,
    ) -> None:
        try:
            smtp: smtplib.SMTP
            if self.options.get("tls"):
                smtp = _WatchedSMTPSSL(host, port, timeout=limit, context=context)
            else:
                smtp = _WatchedSMTP(host, port, timeout=limit)
            with smtp:
                if self.options.get("starttls"):
                    smtp.starttls(context=context)
                if self.options.get("username"):
                    smtp.login(
                        str(self.options["username"]), str(self.options.get("password") or "")
                    )
                smtp.send_message(mail)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = sorted({code for code, _ in exc.recipients.values()})
            raise TransportError(
                f"email: recipients refused (SMTP {', '.join(map(str, codes))})",
                permanent=all(code >= 500 for code in codes),
            ) from None
        except smtplib.SMTPResponseException as exc:
            # 5xx is permanent (bad login, sender refused, policy); 4xx asks us to try later.
            reply = (
                exc.smtp_error.decode("utf-8", "replace")
                if isinstance(exc.smtp_error, bytes)
                else str(exc.smtp_error)
            )
            # The reply is masked before it is cut: a cut secret would no longer match.
            reply = clip(redact(one_line(reply), self.secrets()), 200)
            raise TransportError(
                f"email: SMTP {exc.smtp_code}: {reply}",
                permanent=exc.smtp_code >= 500,
            ) from None
        except smtplib.SMTPNotSupportedError:
            raise TransportError(
                "email: the server does not support STARTTLS or AUTH", permanent=True
            ) from None
        except ssl.SSLCertVerificationError:
            raise TransportError("email: TLS certificate not trusted", permanent=True) from None
        except ssl.SSLError:
            raise TransportError("email: TLS error") from None
        except TimeoutError:
            raise TransportError("email: timed out") from None
        except ConnectionRefusedError:
            raise TransportError("email: connection refused") from None
        except socket.gaierror:
            raise TransportError("email: host not found") from None
        except (smtplib.SMTPException, OSError) as exc:
            raise TransportError(f"email: {exc.__class__.__name__}") from None
        return None


class _WatchedSMTP(smtplib.SMTP):
    """SMTP whose connection the running watchdog can cut (the greeting is read in __init__)."""

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        # _get_socket is smtplib's (since Python 2) but not in its type stubs.
        sock: socket.socket = super()._get_socket(host, port, timeout)  # type: ignore[misc]
        adopt_socket(sock)
        return sock


class _WatchedSMTPSSL(smtplib.SMTP_SSL):
    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        # _get_socket is smtplib's (since Python 2) but not in its type stubs.
        sock: socket.socket = super()._get_socket(host, port, timeout)  # type: ignore[misc]
        adopt_socket(sock)
        return sock
