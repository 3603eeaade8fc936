"""No secret leaks, in the style of Alertmanager's AssertNotifyLeaksNoSecret.

For every channel, with its endpoint refusing connections, answering a permanent error, a
temporary error, and never answering, no secret (nor a piece of one) appears in stdout,
stderr, the log, or any column of any table. The failing endpoints echo what they were sent
(path, headers, body, password) in their error answers, as real ones sometimes do.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from typer.testing import CliRunner

from incident_cli.cli import app
from incident_cli.cli.context import Env
from incident_cli.notify.channels.registry import KINDS
from tests.support.notify import (
    T0,
    Received,
    Reply,
    alert,
    closed_port,
    dump_db,
    make_setup,
    receiver,
    silent_port,
)

MARK = "s3cr3t"  # every secret below contains it; no output may
# The leak matrix covers every kind (a new one needs a _channel_spec), and Slack's Web API mode.
CHANNELS = (*KINDS, "slack-web-api")
FAILURES = ("refused", "permanent", "temporary", "timeout")


def _echo(status: int) -> Any:
    def reply(request: Received) -> Reply:
        # What a chatty endpoint says back: the path, the credentials, the body, up front.
        echoed = " ".join(
            [
                "rejected",
                request.path,
                request.headers.get("Authorization", ""),
                json.dumps(request.body),
            ]
        )
        return status, {"Content-Type": "text/plain"}, echoed.encode()

    return reply


class EchoingMailbox:
    """An SMTP server that logs you in, then refuses or defers, quoting your password."""

    def __init__(self, permanent: bool) -> None:
        self.permanent = permanent
        self.password = ""

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        if isinstance(data, LoginPassword):
            self.password = data.password.decode()
        if self.permanent:
            return AuthResult(
                success=False, handled=False, message=f"535 5.7.8 bad password {self.password}"
            )
        return AuthResult(success=True)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return f"451 4.3.0 try later, {self.password}"


@contextmanager
def endpoint(kind: str, failure: str) -> Iterator[str]:
    """A loopback address that fails in the given way: http://host:port or host:port."""
    with ExitStack() as stack:
        if failure == "refused":
            port = closed_port()
        elif failure == "timeout":
            port = stack.enter_context(silent_port())
        elif kind == "email":
            mailbox = EchoingMailbox(permanent=failure == "permanent")
            port = closed_port()
            controller = Controller(
                mailbox,
                hostname="127.0.0.1",
                port=port,
                authenticator=mailbox.authenticate,
                auth_require_tls=False,  # plain SMTP with login: the password is on the wire
            )
            controller.start()
            stack.callback(controller.stop)
        else:
            server = stack.enter_context(receiver(_echo(400 if failure == "permanent" else 500)))
            yield server.url
            return
        yield f"http://127.0.0.1:{port}"


def _channel_spec(kind: str, base: str) -> str:
    host_port = base.removeprefix("http://")
    host, port = host_port.split(":")
    return {
        "slack": f'{{type: slack, webhook_url: "{base}/services/T0/B0/{MARK}-slack-token",'
        " timeout: 300ms}",
        "slack-web-api": f"{{type: slack, bot_token: xoxb-{MARK}-bot, channel: '#oncall',"
        f" api_url: '{base}/api', timeout: 300ms}}",
        "pagerduty": f"{{type: pagerduty, routing_key: {MARK}-pd-routing-key,"
        f" url: '{base}/v2/enqueue', api_token: {MARK}-pd-api-token, sync: true,"
        f" api_url: '{base}', timeout: 300ms}}",
        "statuspage": f"{{type: statuspage, page_id: page1, api_key: {MARK}-sp-api-key,"
        f" api_url: '{base}/v1', components: {{backend: c1}}, timeout: 300ms}}",
        "email": f"{{type: email, host: {host}, port: {port}, username: ops,"
        f" password: {MARK}-mail-password, from: a@example.com, to: [b@example.com],"
        " timeout: 300ms}",
        "webhook": f'{{type: webhook, url: "{base}/hook/{MARK}-hook-path?token={MARK}-query",'
        f' headers: {{Authorization: "Bearer {MARK}-header"}}, timeout: 300ms}}',
    }[kind]


@pytest.mark.parametrize("failure", FAILURES)
@pytest.mark.parametrize("kind", CHANNELS)
def test_no_secret_leaks_when_the_endpoint_fails(
    tmp_path: Path, kind: str, failure: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with endpoint(kind, failure) as base:
        setup = make_setup(tmp_path, {"ch": _channel_spec(kind, base)})
        setup.fire([alert(service="backend")])

        def run(*args: str) -> Any:
            argv = ["--config", str(setup.config_path), "--db", str(setup.db_path), *args]
            env = Env(clock=lambda: T0 + 5)
            return CliRunner().invoke(app, argv, obj=env, env={"COLUMNS": "250"})

        results = [
            run("-v", "notify", "--dry-run"),
            run("-v", "notify"),
            run("notify", "--json", "--dry-run"),
            run("-v", "sync"),
            run("list"),
            run("show", "1"),
            run("show", "1", "--json"),
        ]

    notify = results[1]
    assert notify.exit_code == (1 if failure == "permanent" else 0), notify.output
    detail = json.loads(results[-1].stdout)
    (row,) = detail["notifications"]
    assert row["status"] == ("dead" if failure == "permanent" else "pending")
    assert row["error"], "the failure is recorded (without secrets)"

    ours = [r for r in caplog.records if not r.name.startswith("mail.log")]
    texts = {
        "stdout": "".join(r.stdout for r in results),
        "stderr": "".join(r.stderr for r in results),
        "log": "\n".join(f"{r.name}: {r.getMessage()}" for r in ours),
        "db": dump_db(setup.db_path),
    }
    for where, text in texts.items():
        assert MARK not in text, f"a secret leaked into {where}: {text[:2000]}"


def test_an_error_body_is_masked_before_it_is_cut(tmp_path: Path) -> None:
    import responses

    from tests.support.notify import deliver

    url = f"https://hooks.slack.com/services/T0/B0/{MARK}-slack-token"
    setup = make_setup(tmp_path, {"slack": f'{{type: slack, webhook_url: "{url}"}}'})
    setup.fire([alert(service="backend")])
    with responses.RequestsMock() as mock:
        # The secret straddles the point where the error text is cut.
        mock.post(url, status=400, body="x" * 190 + f" {url} and more")
        report = deliver(setup)

    error = report.dead[0].error
    assert "x *** and" in error
    assert "s3cr" not in error
    assert "hooks.slack.com/serv" not in error
