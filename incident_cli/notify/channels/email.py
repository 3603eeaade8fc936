"""Email over SMTP: plain, STARTTLS or implicit TLS, with login; a plain-text message."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

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
from incident_cli.notify.channels.options import EnvDefaults, Options, addresses, flag, port, text

if TYPE_CHECKING:
    from email.message import EmailMessage


@dataclass(frozen=True)
class EmailOptions(Options):
    ENV = EnvDefaults(
        when=("SMTP_HOST", "ALERT_EMAIL_TO"),
        yaml={
            "host": "${SMTP_HOST}",
            "port": "${SMTP_PORT:-25}",
            "starttls": "${SMTP_STARTTLS:-false}",
            "username": "${SMTP_USERNAME:-}",
            "password": "${SMTP_PASSWORD:-}",
            "from": "${SMTP_FROM:-incident@localhost}",
            "to": "${ALERT_EMAIL_TO}",
        },
    )

    host: str | None = text(required=True)
    port: int = port()  # 0: 465 with tls, 587 with starttls, else 25
    starttls: bool = flag()
    tls: bool = flag()
    username: str | None = text()
    password: str | None = text(secret=True)
    sender: str | None = text(key="from", required=True)
    to: tuple[str, ...] = addresses(required=True)

    def completed(self) -> EmailOptions:
        if self.port:
            return self
        return dataclasses.replace(self, port=465 if self.tls else (587 if self.starttls else 25))

    def problem(self) -> tuple[str | None, str] | None:
        if self.tls and self.starttls:
            return None, "choose one of tls (implicit TLS) and starttls"
        return None

    def endpoint(self) -> str:
        return f"{self.host}:{self.port} → {', '.join(self.to)}"


class EmailChannel(Channel[EmailOptions]):
    type = "email"
    options_type = EmailOptions
    default_rate_limit = 0.0

    def subject(self, message: Message) -> str:
        facts = facts_of(message)
        subject = f"[{facts.status} {facts.severity}] {one_line(facts.title)}"
        if facts.incident_id is not None:
            subject += f" (incident {facts.incident_id})"
        return clip(subject, 200)

    def build(self, message: Message) -> EmailMessage:
        from email.message import EmailMessage
        from email.utils import formatdate, make_msgid

        mail = EmailMessage()
        mail["Subject"] = self.subject(message)
        mail["From"] = str(self.options.sender)
        mail["To"] = ", ".join(self.options.to)
        mail["Date"] = formatdate(localtime=False, usegmt=True)
        mail["Message-ID"] = make_msgid(domain="incident.local")
        mail.set_content(plain_text(facts_of(message)) + "\n")
        return mail

    def prepare(self, message: Message) -> Outgoing:
        mail = self.build(message)
        scheme = "smtps" if self.options.tls else "smtp"
        url = f"{scheme}://{self.options.host}:{self.options.port}"
        return Outgoing(
            "SMTP",
            url,
            {
                "subject": mail["Subject"],
                "to": list(self.options.to),
                "text": mail.get_content(),
            },
        )

    def send(self, message: Message, *, within: float | None = None) -> str | None:
        import ssl

        from incident_cli.http import wall_clock
        from incident_cli.notify.channels.smtp import send_mail

        mail = self.build(message)
        context = ssl.create_default_context()
        limit = self.time_limit(within)
        # Every SMTP step has the socket timeout; the watchdog bounds them all together.
        with wall_clock(limit) as watchdog:
            try:
                send_mail(self.options, mail, context, limit, self.secrets())
            except TransportError as exc:
                if watchdog.expired:
                    raise TransportError(f"email: timed out after {round(limit, 1):g}s") from None
                raise exc
        return None
