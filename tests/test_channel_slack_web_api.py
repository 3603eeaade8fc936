"""Slack through the Web API (a bot token), against a local fake of chat.postMessage and
chat.update: the first message is kept (channel and ts), follow-ups recolour it and reply in its
thread, `ok: false` and `ratelimited` answers are handled as Slack documents them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from incident_cli.notify.channels.base import ACKNOWLEDGED_COLOUR, RESOLVED_COLOUR
from tests.support.notify import (
    T0,
    FakeClock,
    Setup,
    ack,
    alert,
    deliver,
    dump_db,
    make_setup,
    receiver,
    resolve,
    rows,
)
from tests.support.slack import FakeSlack, answer

BOT = "xoxb-1-s3cr3t-bot-token"


@contextmanager
def slack(tmp_path: Path) -> Iterator[tuple[Setup, FakeSlack]]:
    fake = FakeSlack()
    with receiver(fake) as server:
        spec = f"{{type: slack, bot_token: {BOT}, channel: '#oncall', api_url: '{server.url}/api'}}"
        yield make_setup(tmp_path, {"sl": spec}), fake


def refs(setup: Setup) -> list[tuple[int, str, str]]:
    return [
        (r["incident_id"], r["channel"], r["remote_id"])
        for r in rows(setup, "SELECT * FROM channel_refs")
    ]


def test_post_keep_ts_then_update_and_reply_in_the_thread(tmp_path: Path) -> None:
    with slack(tmp_path) as (setup, fake):
        setup.fire([alert(service="backend")])
        assert deliver(setup).count("sent") == 1
        ack(setup, 1)
        resolve(setup, 1)
        assert deliver(setup, FakeClock(T0 + 200)).count("sent") == 2

    assert fake.methods() == [
        "chat.postMessage",
        "chat.update",
        "chat.postMessage",
        "chat.update",
        "chat.postMessage",
    ]
    first = fake.calls[0]
    assert first.method == "POST" and first.path == "/api/chat.postMessage"
    assert first.headers["Authorization"] == f"Bearer {BOT}"
    assert first.body["channel"] == "#oncall"
    assert first.body["text"].startswith("[FIRING] ")
    ts = "1700000000.000001"
    assert refs(setup) == [(1, "sl", f"C0ONCALL/{ts}")]
    update, reply = fake.calls[1], fake.calls[2]
    assert (update.body["channel"], update.body["ts"]) == ("C0ONCALL", ts)
    assert update.body["attachments"][0]["color"] == ACKNOWLEDGED_COLOUR
    assert update.body["text"].startswith("[ACKNOWLEDGED] ")
    assert reply.body == {"channel": "C0ONCALL", "thread_ts": ts, "text": update.body["text"]}
    assert fake.calls[3].body["attachments"][0]["color"] == RESOLVED_COLOUR
    assert fake.calls[4].body["thread_ts"] == ts
    assert BOT not in dump_db(setup.db_path)


def test_ratelimited_is_retried_after_retry_after(tmp_path: Path) -> None:
    with slack(tmp_path) as (setup, fake):
        fake.override = lambda method, request: answer(
            {"ok": False, "error": "ratelimited"}, 429, **{"Retry-After": "30"}
        )
        setup.fire([alert(service="backend")])
        report = deliver(setup)
    assert report.count("retry") == 1
    (row,) = rows(setup)
    assert row["status"] == "pending" and row["next_attempt_at"] >= T0 + 1 + 30
    assert "429" in row["error"] and BOT not in row["error"]


def test_ok_false_is_a_dead_letter_naming_the_error(tmp_path: Path) -> None:
    with slack(tmp_path) as (setup, fake):
        fake.override = lambda method, request: answer({"ok": False, "error": "not_in_channel"})
        setup.fire([alert(service="backend")])
        report = deliver(setup)
    assert report.count("dead") == 1
    assert rows(setup)[0]["error"] == "slack: not_in_channel"


def test_garbage_is_retried(tmp_path: Path) -> None:
    with slack(tmp_path) as (setup, fake):
        fake.override = lambda method, request: (200, {}, b"<html>gateway</html>")
        setup.fire([alert(service="backend")])
        report = deliver(setup)
    assert report.count("retry") == 1
    assert rows(setup)[0]["error"] == "slack: the answer is not JSON"


def test_a_deleted_message_starts_a_new_one(tmp_path: Path) -> None:
    with slack(tmp_path) as (setup, fake):
        setup.fire([alert(service="backend")])
        deliver(setup)
        fake.deleted = True
        ack(setup, 1)
        assert deliver(setup, FakeClock(T0 + 200)).count("sent") == 1
    assert fake.methods() == ["chat.postMessage", "chat.update", "chat.postMessage"]
    assert "thread_ts" not in fake.calls[2].body
    assert refs(setup) == [(1, "sl", "C0ONCALL/1700000000.000003")]


def test_bot_token_needs_a_channel_and_excludes_a_webhook(tmp_path: Path) -> None:
    from incident_cli.config.load import load_config
    from incident_cli.errors import ConfigError

    config = tmp_path / "incident.yaml"
    for spec, problem in [
        ("{type: slack, bot_token: x}", "channels.sl.channel: bot_token needs the channel"),
        (
            "{type: slack, bot_token: x, channel: c, webhook_url: 'https://h/x'}",
            "give either webhook_url or bot_token",
        ),
    ]:
        config.write_text(f"channels:\n  sl: {spec}\n")
        try:
            load_config(config, {}, must_exist=True)
        except ConfigError as exc:
            assert problem in str(exc)
        else:
            raise AssertionError(spec)


def test_a_storm_summary_is_posted_and_keeps_nothing(tmp_path: Path) -> None:
    with slack(tmp_path) as (setup, fake):
        setup.add_config("incidents: {storm: {max_new_per_tick: 2}}")
        setup.fire([alert(service=f"svc{i}") for i in range(3)])
        report = deliver(setup)
    assert report.count("sent") == 1 and report.count("dead") == 0
    assert fake.methods() == ["chat.postMessage"]
    assert fake.calls[0].body["text"] == "[STORM] 3 incidents opened at once"
    assert refs(setup) == []
