"""Reactions on our Slack messages flow back (reactions.get, against a local fake of the Web
API): eyes acknowledges and white_check_mark resolves, for `allowed_users` only."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.support import backend
from tests.support.binaries import run_cli
from tests.support.notify import (
    T0,
    FakeClock,
    Setup,
    alert,
    deliver,
    dump_db,
    make_setup,
    receiver,
    rows,
    sync,
)
from tests.support.notify import (
    incident_row as incident,
)
from tests.support.slack import FakeSlack, answer

pytestmark = pytest.mark.usefixtures("both_backends")

BOT = "xoxb-1-s3cr3t-bot-token"
TS = "1700000000.000001"


@contextmanager
def slack(tmp_path: Path) -> Iterator[tuple[Setup, FakeSlack]]:
    fake = FakeSlack()
    with receiver(fake) as server:
        spec = (
            f"{{type: slack, bot_token: {BOT}, channel: '#oncall', api_url: '{server.url}/api',"
            " allowed_users: [U0ALICE, U0BOB]}"
        )
        setup = make_setup(tmp_path, {"sl": spec})
        setup.fire([alert(service="backend")])
        assert deliver(setup).count("sent") == 1
        yield setup, fake


def notes(setup: Setup) -> list[tuple[str, str]]:
    return [
        (r["message"], r["actor"])
        for r in rows(setup, "SELECT * FROM timeline WHERE kind = 'note' ORDER BY id")
    ]


def test_eyes_by_an_allowed_user_acknowledges_and_it_is_confirmed_in_the_thread(
    tmp_path: Path,
) -> None:
    with slack(tmp_path) as (setup, fake):
        fake.reactions = [{"name": "eyes", "users": ["U0ALICE"], "count": 1}]
        result = sync(setup)
        again = sync(setup, T0 + 120)
        assert deliver(setup, FakeClock(T0 + 121)).count("sent") == 1

    assert result.acknowledged == [1] and again.acknowledged == []
    read = fake.calls[1]
    assert read.method == "GET" and urlsplit(read.path).path == "/api/reactions.get"
    assert parse_qs(urlsplit(read.path).query) == {
        "channel": ["C0ONCALL"],
        "timestamp": [TS],
        "full": ["true"],
    }
    assert read.headers["Authorization"] == f"Bearer {BOT}"
    row = incident(setup)
    assert (row["status"], row["acknowledged_by"]) == ("acknowledged", "slack:U0ALICE")
    # Confirmed in the thread: the original recoloured, and a reply under it.
    assert fake.methods()[-2:] == ["chat.update", "chat.postMessage"]
    assert fake.calls[-1].body["thread_ts"] == TS
    assert fake.calls[-1].body["text"].startswith("[ACKNOWLEDGED] ")


def test_white_check_mark_by_an_allowed_user_resolves(tmp_path: Path) -> None:
    with slack(tmp_path) as (setup, fake):
        fake.reactions = [
            {"name": "eyes", "users": ["U0ALICE"], "count": 1},
            {"name": "white_check_mark", "users": ["U0BOB"], "count": 1},
        ]
        result = sync(setup)
    assert result.resolved == [1] and result.acknowledged == []
    row = incident(setup)
    assert (row["status"], row["resolution"]) == ("resolved", "manual")
    events = rows(setup, "SELECT * FROM timeline WHERE kind = 'resolved'")
    assert [(e["message"], e["actor"]) for e in events] == [
        ("resolved by slack:U0BOB", "slack:U0BOB")
    ]


def test_a_reaction_by_a_user_not_allowed_is_ignored_with_one_note(tmp_path: Path) -> None:
    with slack(tmp_path) as (setup, fake):
        fake.reactions = [
            {"name": "white_check_mark", "users": ["U0MALLORY"], "count": 1},
            {"name": "thumbsup", "users": ["U0ALICE"], "count": 1},
        ]
        sync(setup)
        sync(setup, T0 + 120)  # said once, not every tick
    assert incident(setup)["status"] == "open"
    assert notes(setup) == [
        (
            "reaction :white_check_mark: by Slack user U0MALLORY ignored: not in allowed_users",
            "slack:U0MALLORY",
        )
    ]


def test_ratelimited_is_honoured_across_ticks(tmp_path: Path) -> None:
    with slack(tmp_path) as (setup, fake):
        fake.override = lambda method, request: (
            answer({"ok": False, "error": "ratelimited"}, 429, **{"Retry-After": "90"})
            if method == "reactions.get"
            else None
        )
        first = sync(setup)
        calls = len(fake.calls)
        second = sync(setup, T0 + 120)
        assert len(fake.calls) == calls
    assert first.errors == ["channel sl: cannot read Slack reactions: slack: ratelimited"]
    assert second.errors == [] and second.notes == ["channel sl: rate limited, next read in 30s"]


def test_garbage_and_ok_false_are_warnings_that_change_nothing(tmp_path: Path) -> None:
    with slack(tmp_path) as (setup, fake):
        fake.override = lambda method, request: (
            (200, {}, b"{garbage") if method == "reactions.get" else None
        )
        garbage = sync(setup)
        fake.override = lambda method, request: (
            answer({"ok": False, "error": "missing_scope"}) if method == "reactions.get" else None
        )
        scope = sync(setup)
    assert garbage.errors == [
        "channel sl: cannot read Slack reactions: slack: the answer is not JSON"
    ]
    assert scope.errors == ["channel sl: cannot read Slack reactions: slack: missing_scope"]
    assert incident(setup)["status"] == "open"


def test_a_deleted_message_is_noted_once(tmp_path: Path) -> None:
    with slack(tmp_path) as (setup, fake):
        fake.deleted = True
        result = sync(setup)
        sync(setup, T0 + 120)
    assert result.errors == []
    assert notes(setup) == [
        ("its Slack message in channel sl is gone: reactions not read", "incident")
    ]


def test_incident_sync_as_cron_runs_it(tmp_path: Path) -> None:
    with slack(tmp_path) as (setup, fake):
        argv = ["-c", str(setup.config_path), "--db", backend.locate(setup.db_path)]
        fake.reactions = [{"name": "eyes", "users": ["U0BOB"], "count": 1}]
        done = run_cli([*argv, "sync"], cwd=tmp_path)
        fake.override = lambda method, request: (503, {}, f"{request.headers}".encode())
        down = run_cli([*argv, "sync"], cwd=tmp_path)
        shown = run_cli([*argv, "config", "show"], cwd=tmp_path)
    assert (done.code, done.stdout, done.stderr) == (0, "", "")
    assert incident(setup)["acknowledged_by"] == "slack:U0BOB"
    assert (down.code, down.stderr) == (
        75,
        "incident: sync: channel sl: cannot read Slack reactions: slack: HTTP 503\n",
    )
    everything = "".join(r.stdout + r.stderr for r in (done, down, shown))
    assert "s3cr3t" not in everything + dump_db(setup.db_path)
