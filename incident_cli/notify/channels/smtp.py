"""SMTP for the email channel: plain, STARTTLS or implicit TLS, with login, every socket under
the exchange's watchdog. Imported only when an email is sent."""

from __future__ import annotations

import smtplib
import socket
import ssl
from email.message import EmailMessage
from typing import TYPE_CHECKING

from incident_cli.http import adopt_socket
from incident_cli.notify.channels.base import TransportError, clip, one_line
from incident_cli.redact import redact

if TYPE_CHECKING:
    from incident_cli.notify.channels.email import EmailOptions


def send_mail(
    options: EmailOptions,
    mail: EmailMessage,
    context: ssl.SSLContext,
    limit: float,
    secrets: list[str],
) -> None:
    """Send one message over SMTP as the options say; raises TransportError."""
    host, port = str(options.host), int(options.port)
    try:
        smtp: smtplib.SMTP
        if options.tls:
            smtp = _WatchedSMTPSSL(host, port, timeout=limit, context=context)
        else:
            smtp = _WatchedSMTP(host, port, timeout=limit)
        with smtp:
            if options.starttls:
                smtp.starttls(context=context)
            if options.username:
                smtp.login(str(options.username), str(options.password or ""))
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
        reply = clip(redact(one_line(reply), secrets), 200)
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
