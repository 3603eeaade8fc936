"""The fault runs' pipeline (tests/faults and bench/faults.py): a real Alertmanager (or
Prometheus) as the source, a webhook channel, a PagerDuty Events v2 mock, an SMTP server
(aiosmtpd), a recovery command that appends its attempt number to a file, and ticks run as cron
runs them, on a clock that `faketime` can move (tests/support/invariants.py checks the result)."""

from __future__ import annotations

import email
import email.policy
import glob
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.binaries import REPO, Process, cli_env, start_alertmanager
from tests.support.notify import Received, Receiver, Reply, closed_port, receiver

PD_SCHEMA = (
    Path(__file__).resolve().parent.parent / "fixtures/pagerduty/events-v2.request.schema.json"
)
PD_KEY = "R0UTINGKEYfaults0123456789"
ACCEPTED: Reply = (202, {}, b'{"status":"success","message":"Event processed"}')


def pipeline_config(
    am_url: str,
    hook_url: str,
    service: str,
    command_sleep: float,
    *,
    pagerduty_url: str | None = None,
    smtp_port: int | None = None,
    source: str | None = None,
    command: str | None = None,
    recovery: str = "",
    timeout: str = "2s",
    record: str = "$INCIDENT_ATTEMPT",
) -> str:
    """The rule file: alerts `BackendDown{service=...}` (a "~regex" matches several) open an
    incident each, notify the webhook (and PagerDuty and email when their endpoints are given)
    and run the recovery command, which appends `record` ($INCIDENT_ATTEMPT) to attempts.log.
    `source` replaces the Alertmanager source (a YAML flow mapping), `command` the command's
    shell text, `recovery` adds keys."""
    channels = {"hook": f'{{type: webhook, url: "{hook_url}/hook", timeout: {timeout}}}'}
    if pagerduty_url:
        channels["pd"] = (
            f'{{type: pagerduty, routing_key: {PD_KEY}, url: "{pagerduty_url}/v2/enqueue",'
            f" timeout: {timeout}}}"
        )
    if smtp_port:
        channels["mail"] = (
            f"{{type: email, host: 127.0.0.1, port: {smtp_port}, from: incident@example.com,"
            f" to: [oncall@example.com], timeout: {timeout}}}"
        )
    source = source or f'{{type: alertmanager, url: "{am_url}", timeout: 5s}}'
    command = command or f"echo {record} >> attempts.log; sleep {command_sleep}"
    listed = "\n".join(f"  {name}: {spec}" for name, spec in channels.items())
    return f"""
sources:
  am: {source}
channels:
{listed}
incidents: {{resolve_after: 1s}}
defaults: {{notify: [{", ".join(channels)}]}}
rules:
  - name: backend
    match: {{alertname: BackendDown, service: "{service}"}}
    handler: service_down
    recovery:
      commands: [["sh", "-c", "{command}"]]
      timeout: 10s{recovery}
"""


def post_alert(am_url: str, service: str, resolved: bool = False) -> None:
    """Fire (or resolve) `BackendDown{service=...}` through Alertmanager's API."""
    alert: dict[str, Any] = {
        "labels": {"alertname": "BackendDown", "service": service, "severity": "critical"}
    }
    if resolved:
        alert["endsAt"] = "2000-01-01T00:00:00Z"
    request = urllib.request.Request(
        am_url + "/api/v2/alerts",
        json.dumps([alert]).encode(),
        {"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200


@contextmanager
def pipeline(workdir: Path, command_sleep: float = 1.0) -> Iterator[tuple[Receiver, str]]:
    """A real Alertmanager with `BackendDown{service=backend}` firing, a webhook receiver, and
    the rule file written to workdir/incident.yaml: yields (the receiver, Alertmanager's URL)."""
    am = start_alertmanager(workdir / "am")
    try:
        with receiver() as hook:
            post_alert(am.url, "backend")
            (workdir / "incident.yaml").write_text(
                pipeline_config(am.url, hook.url, "backend", command_sleep)
            )
            yield hook, am.url
    finally:
        am.stop()


def age_leases(db: Path) -> None:
    """Move every lease into the past: what a dead (or stalled) tick's leases are once they
    have run out (30 s for a notification, the command's timeout + 60 s for an action), without
    waiting for them. (The fault runs let the ticks' clock pass them instead: Ticker.wait.)"""
    if not db.exists():
        return  # killed before it created the DB
    conn = sqlite3.connect(db, timeout=30)
    try:
        with conn:
            conn.execute("UPDATE notifications SET lease_until = 1 WHERE lease_until IS NOT NULL")
            conn.execute("UPDATE actions SET lease_until = 1 WHERE lease_until IS NOT NULL")
    except sqlite3.OperationalError as exc:
        if "no such table" not in str(exc):
            raise  # killed before its schema was committed: nothing is leased
    finally:
        conn.close()


# --------------------------------------------------------------------------- the receivers

Behaviour = Callable[[int], Reply | None]
"""A receiver's misbehaviour: given the request's number (0, 1, ...), the reply to give
instead of accepting it, or None to accept it."""


@dataclass
class Taken:
    """One request a receiver took: the reply it gave and whether it accepted the message."""

    request: Received
    status: int
    accepted: bool
    late: bool  # accepted, but answered after the sender's timeout: the sender will send again


@dataclass
class Sinks:
    """The pipeline's receivers: the webhook, the PagerDuty mock and the SMTP server."""

    hook: Receiver
    pagerduty: Receiver
    smtp_port: int
    taken: dict[str, list[Taken]] = field(default_factory=lambda: {"hook": [], "pd": []})
    mail: list[Any] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)  # PagerDuty events the schema refuses
    mail_replies: list[str] = field(default_factory=list)  # SMTP DATA replies given first
    behave: dict[str, Behaviour] = field(default_factory=dict)  # channel → its misbehaviour
    timeout: float = 2.0  # the channels' timeout: an answer later than this is `late`

    def accepted(self) -> Counter[tuple[str, int]]:
        """(channel, incident id) → messages accepted (the late ones included)."""
        got: Counter[tuple[str, int]] = Counter()
        for taken in self.taken["hook"]:
            body = taken.request.body
            if taken.accepted and isinstance(body, dict):
                got["hook", int(body["incident"]["id"])] += 1
        for taken in self.taken["pd"]:
            if taken.accepted:
                got["pd", _pd_incident(taken.request.body)] += 1
        for message in self.mail:
            found = re.search(r"\(incident (\d+)\)", str(message["Subject"]))
            got["mail", int(found.group(1)) if found else 0] += 1
        return got

    def late(self) -> int:
        return sum(t.late for kind in self.taken.values() for t in kind)


def _pd_incident(body: Any) -> int:
    """The incident id behind a PagerDuty event (its dedup_key is `incident-cli/<id>/...`)."""
    key = str(body.get("dedup_key", "")) if isinstance(body, dict) else ""
    found = re.match(r"incident-cli/(\d+)/", key)
    return int(found.group(1)) if found else 0


def _answer(sinks: Sinks, kind: str, request: Received, validate: Callable[[Any], str]) -> Reply:
    index = len(sinks.taken[kind])
    if int(request.headers.get("Content-Length") or 0) and not isinstance(request.body, dict):
        # Cut off mid-body (its sender was killed): no request at all, as a real server sees it.
        sinks.taken[kind].append(Taken(request, 400, False, False))
        return 400, {}, b""
    misbehave = sinks.behave.get(kind)
    reply = misbehave(index) if misbehave else None
    problem = validate(request.body)
    if problem:
        sinks.invalid.append(problem)
        reply = (400, {}, json.dumps({"status": "invalid event", "errors": [problem]}).encode())
    if reply is None:
        reply = ACCEPTED
    status = reply[0]
    delay = float(reply[1].get("X-Delay", 0))
    accepted = 200 <= status < 300
    sinks.taken[kind].append(Taken(request, status, accepted, accepted and delay >= sinks.timeout))
    if delay:
        time.sleep(delay)
    return status, {k: v for k, v in reply[1].items() if k != "X-Delay"}, reply[2]


def _pd_validator() -> Callable[[Any], str]:
    import jsonschema

    schema = json.loads(PD_SCHEMA.read_text())

    def validate(body: Any) -> str:
        try:
            jsonschema.validate(body, schema)
        except jsonschema.ValidationError as exc:
            return exc.message
        if len(json.dumps(body).encode()) > 512 * 1024 or len(body.get("dedup_key", "")) > 255:
            return "event too large or dedup_key over 255 characters"
        return ""

    return validate


@contextmanager
def sinks(timeout: float = 2.0) -> Iterator[Sinks]:
    """The three receivers on loopback. Set `behave[channel]` to make one misbehave; the SMTP
    server's misbehaviour is `mail_replies` (DATA replies given first, in order)."""
    from aiosmtpd.controller import Controller

    holder: list[Sinks] = []
    validate = _pd_validator()

    class Mailbox:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            if holder[0].mail_replies:
                return holder[0].mail_replies.pop(0)
            holder[0].mail.append(
                email.message_from_bytes(envelope.content, policy=email.policy.default)
            )
            return "250 OK"

    port = closed_port()
    controller = Controller(Mailbox(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        with (
            receiver(lambda r: _answer(holder[0], "hook", r, lambda _body: "")) as hook,
            receiver(lambda r: _answer(holder[0], "pd", r, validate)) as pd,
        ):
            holder.append(Sinks(hook, pd, port, timeout=timeout))
            yield holder[0]
    finally:
        controller.stop()


@contextmanager
def full_pipeline(
    workdir: Path, service: str, **config: Any
) -> Iterator[tuple[Process, Sinks, Ticker]]:
    """A real Alertmanager, the three receivers and `incident.yaml` in `workdir` naming them
    all (`config`: more of pipeline_config's options); yields them and a Ticker there."""
    am = start_alertmanager(workdir / "am")
    try:
        with sinks() as got:
            config.setdefault("command_sleep", 0.1)
            (workdir / "incident.yaml").write_text(
                pipeline_config(
                    am.url,
                    got.hook.url,
                    service,
                    pagerduty_url=got.pagerduty.url,
                    smtp_port=got.smtp_port,
                    **config,
                )
            )
            yield am, got, Ticker(workdir)
    finally:
        am.stop()


@contextmanager
def slow_loris() -> Iterator[str]:
    """The URL of a slow-loris HTTP peer (tests/support/slow_peer.py) while the block runs."""
    peer = subprocess.Popen(
        [sys.executable, str(REPO / "tests/support/slow_peer.py"), "http"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert peer.stdout is not None
        yield f"http://127.0.0.1:{int(peer.stdout.readline())}"
    finally:
        peer.kill()
        peer.wait()


# --------------------------------------------------------------------------- the state DB


def db_rows(db: Path, sql: str) -> list[Any]:
    """The rows of one query on the state DB, opened and closed around it."""
    conn = sqlite3.connect(db, timeout=30)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


# --------------------------------------------------------------------------- the ticks

STAGE_LINES = (("poll:", "notify"), ("notify:", "recover"), ("recover:", "notify"))


@dataclass
class Tick:
    code: int
    stdout: str
    stderr: str
    seconds: float = 0.0

    @property
    def killed(self) -> bool:
        return self.code == -signal.SIGKILL

    @property
    def stage(self) -> str:
        """Where a killed tick was: the stage after the last one that printed its summary
        (poll before any; detect-anomalies and sync, which take no time here, count as
        notify's)."""
        stage = "poll"
        for line in self.stdout.splitlines():
            for prefix, then in STAGE_LINES:
                if line.startswith(prefix):
                    stage = then
        return stage


def faketime_library() -> str:
    """Debian's libfaketime (package faketime), the library its `faketime` command preloads."""
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    if not found:
        raise FileNotFoundError("libfaketime.so.1: install Debian's faketime package")
    return found[0]


@dataclass
class Ticker:
    """Runs `incident run` in `workdir` as cron would. Its clock is `offset` seconds off the
    real one (faketime): `wait(s)` lets time pass for the ticks without sleeping through it,
    `jump(s)` moves their clock (backwards too) as an NTP step would."""

    workdir: Path
    offset: int = 0
    prefix: Sequence[str] = ()  # e.g. setpriv, to run the ticks as another user

    def wait(self, seconds: float) -> None:
        self.offset += int(seconds) + 1

    jump = wait

    def argv(self, *args: str) -> list[str]:
        cli = [sys.executable, "-m", "incident_cli", "-c", "incident.yaml", "--db", "state.db"]
        return [*self.prefix, *cli, *(args or ("run",))]

    def clock(self) -> dict[str, str]:
        """The environment `faketime -f OFFSET` gives its command, set on the tick itself (the
        `faketime` wrapper would fork, and report a SIGKILL as exit 1)."""
        if not self.offset:
            return {}
        # The wall clock only, as an NTP step moves it (a faked monotonic clock would stretch
        # every timed wait by the offset); faketime_site/ works around what that breaks.
        return {
            "LD_PRELOAD": faketime_library(),
            "FAKETIME": f"{self.offset:+d}",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            "PYTHONPATH": f"{Path(__file__).parent / 'faketime_site'}{os.pathsep}{REPO}",
        }

    def run(
        self,
        *args: str,
        crash_at: str | None = None,
        kill_after: float | None = None,
        env: dict[str, str] | None = None,
        preexec: Callable[[], None] | None = None,
    ) -> Tick:
        """One tick (or `args`); SIGKILLed at the named step or after `kill_after` seconds."""
        extra = {"PYTHONUNBUFFERED": "1", **self.clock(), **(env or {})}
        if crash_at:
            extra["INCIDENT_TEST_CRASH_AT"] = crash_at
        started = time.monotonic()
        proc = subprocess.Popen(
            self.argv(*args),
            cwd=self.workdir,
            env=cli_env(extra),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=preexec,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(timeout=kill_after if kill_after is not None else 120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate(timeout=60)
        return Tick(proc.returncode, out, err, time.monotonic() - started)
