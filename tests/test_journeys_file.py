"""Reading the journeys file incrementally, noticing rotation and truncation, hostile lines."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from incident_cli.config.load import load_config
from incident_cli.config.model import Config
from incident_cli.intake import journeys
from incident_cli.intake.anomaly import detect_anomalies
from incident_cli.intake.anomaly_result import DetectResult
from incident_cli.intake.journeys import JourneyResult, parse_line
from incident_cli.store.connection import open_db
from incident_cli.times import parse_rfc3339
from tests.support.builders import JOURNEYS_NOW


def line(i: int, journey: str = "login", ok: bool = True, latency: float = 100.0) -> str:
    at = f"2026-11-28T20:{i // 60:02d}:{i % 60:02d}Z"
    return json.dumps({"journey": journey, "at": at, "ok": ok, "latency_ms": latency}) + "\n"


class Rig:
    """A config whose anomaly.journeys is `path`, and a state DB, both under tmp_path."""

    def __init__(self, tmp_path: Path) -> None:
        cfg = tmp_path / "incident.yaml"
        cfg.write_text("anomaly: {journeys: journeys.jsonl}\n")
        self.config: Config = load_config(str(cfg), {}, must_exist=True)
        self.path = tmp_path / "journeys.jsonl"
        self.db = open_db(tmp_path / "state.db")

    def run(self) -> DetectResult:
        return detect_anomalies(self.db, self.config, JOURNEYS_NOW)

    def stored(self) -> int:
        return int(self.db.conn.execute("SELECT count(*) FROM journeys").fetchone()[0])


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path)


def test_it_reads_only_the_lines_added_since_the_last_tick(rig: Rig) -> None:
    path = rig.path
    path.write_text("".join(line(i) for i in range(3)))
    first = rig.run()
    assert first.file is not None
    assert (first.file.lines, first.file.stored, first.file.reset) == (3, 3, False)
    with path.open("a") as f:
        f.write(line(3) + line(4))
    second = rig.run()
    assert second.file is not None
    assert (second.file.lines, second.file.stored, second.file.reset) == (2, 2, False)
    third = rig.run()
    assert third.file is not None
    assert (third.file.lines, third.file.stored) == (0, 0)
    assert rig.stored() == 5
    state = journeys.load_file_state(rig.db, str(path))
    assert state is not None
    assert state.offset == path.stat().st_size


def test_a_partial_last_line_waits_for_the_next_tick(rig: Rig) -> None:
    path = rig.path
    whole = line(1)
    path.write_text(line(0) + whole[:20])
    first = rig.run()
    assert first.file is not None
    assert (first.file.lines, first.file.skipped) == (1, 0)
    with path.open("a") as f:
        f.write(whole[20:])
    second = rig.run()
    assert second.file is not None
    assert (second.file.lines, second.file.stored, second.file.skipped) == (1, 1, 0)
    assert rig.stored() == 2


def test_a_truncated_file_is_read_again_from_the_start(rig: Rig) -> None:
    path = rig.path
    path.write_text("".join(line(i) for i in range(5)))
    rig.run()
    with path.open("r+") as f:  # copytruncate: same inode, shorter
        f.truncate(0)
        f.write(line(10) + line(11))
    again = rig.run()
    assert again.file is not None
    assert (again.file.reset, again.file.lines, again.file.stored) == (True, 2, 2)
    assert rig.stored() == 7


def test_a_file_rewritten_past_the_old_offset_is_noticed_by_its_head(rig: Rig) -> None:
    path = rig.path
    path.write_text("".join(line(i) for i in range(3)))
    rig.run()
    with path.open("r+") as f:  # same inode, longer than before, different content
        f.truncate(0)
        f.write("".join(line(i, journey="search") for i in range(6)))
    again = rig.run()
    assert again.file is not None
    assert (again.file.reset, again.file.stored) == (True, 6)
    assert rig.stored() == 9


def test_a_replaced_file_is_read_from_the_start_without_counting_twice(rig: Rig) -> None:
    path = rig.path
    path.write_text("".join(line(i) for i in range(4)))
    rig.run()
    # Replaced by a new file holding the old lines and two new ones (a new inode).
    new = path.with_suffix(".new")
    new.write_text("".join(line(i) for i in range(6)))
    keep = path.with_suffix(".old")
    os.rename(path, keep)  # keep the old inode alive so it is not reused
    os.rename(new, path)
    again = rig.run()
    assert again.file is not None
    assert (again.file.reset, again.file.lines, again.file.stored) == (True, 6, 2)
    assert rig.stored() == 6


def test_a_missing_file_is_not_an_error(rig: Rig) -> None:
    result = rig.run()
    assert result.file is None
    assert result.file_error is None


def test_an_unreadable_file_is_reported_and_the_rest_still_runs(rig: Rig) -> None:
    rig.path.mkdir()
    journeys.record_result(rig.db, JourneyResult("login", JOURNEYS_NOW - 5, True, 10.0))
    result = rig.run()
    assert result.file_error is not None
    assert "journeys.jsonl" in result.file_error
    assert [o.evaluation.journey for o in result.journeys] == ["login"]


HOSTILE = [
    (b"not json", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (b'"login"', "not a JSON object"),
    (b"{}", "missing journey"),
    (b'{"journey": "a", "ok": true, "latency_ms": 1}', "missing at"),
    (b'{"journey": "a", "at": "2026-11-28T20:00:00Z", "latency_ms": 1}', "missing ok"),
    (b'{"journey": "a", "at": "2026-11-28T20:00:00Z", "ok": true}', "missing latency_ms"),
    (b'{"journey": "a", "at": "2026-11-28T20:00:00Z", "ok": "yes", "latency_ms": 1}', "ok is"),
    (b'{"journey": "a", "at": "2026-11-28T20:00:00Z", "ok": 1, "latency_ms": 1}', "ok is"),
    (b'{"journey": "a", "at": "2026-11-28T20:00:00Z", "ok": true, "latency_ms": "9"}', "number"),
    (b'{"journey": "a", "at": "2026-11-28T20:00:00Z", "ok": true, "latency_ms": true}', "number"),
    (b'{"journey": "a", "at": "2026-11-28T20:00:00Z", "ok": true, "latency_ms": -1}', ">= 0"),
    (b'{"journey": "a", "at": "2026-11-28T20:00:00Z", "ok": true, "latency_ms": NaN}', "not JSON"),
    (b'{"journey": "a", "at": "2026-11-28T20:00:00Z", "ok": true, "latency_ms": 1e400}', "finite"),
    (b'{"journey": "a", "at": "2026-11-28T20:00:00Z", "ok": true, "latency_ms": 1e12}', "above"),
    (
        b'{"journey": "a", "at": "2026-11-28T20:00:00Z", "ok": true, "latency_ms": '
        + b"9" * 5000
        + b"}",
        "not JSON",
    ),
    (b'{"journey": 7, "at": "2026-11-28T20:00:00Z", "ok": true, "latency_ms": 1}', "string"),
    (b'{"journey": " ", "at": "2026-11-28T20:00:00Z", "ok": true, "latency_ms": 1}', "empty"),
    (
        b'{"journey": "' + b"a" * 201 + b'", "at": "2026-11-28T20:00:00Z", "ok": true,'
        b' "latency_ms": 1}',
        "longer than 200",
    ),
    (b'{"journey": "a\\nb", "at": "2026-11-28T20:00:00Z", "ok": true, "latency_ms": 1}', "control"),
    (
        b'{"journey": "\\ud800", "at": "2026-11-28T20:00:00Z", "ok": true, "latency_ms": 1}',
        "unicode",
    ),
    (b'{"journey": "a", "at": "yesterday", "ok": true, "latency_ms": 1}', "RFC 3339"),
    (b'{"journey": "a", "at": 1764360000, "ok": true, "latency_ms": 1}', "RFC 3339"),
    *[
        (b'{"journey": "a", "at": "' + at + b'", "ok": true, "latency_ms": 1}', "RFC 3339")
        for at in [
            b"2026-11-28",  # a date, no time
            b"2026-11-28T20:00:00",  # no Z or offset: not "UTC by default"
            b"2026-11-28T20:00:00.5",
            b"2026-11-28T20:00Z",  # no seconds
            b"2026-11-28T20Z",
            b"20261128T200000Z",  # ISO 8601 basic format
            b"2026-W48-6T20:00:00Z",  # an ISO week date
            b"2026-11-28 20:00:00Z",
            b"2026-11-28T20:00:00+0200",
            b"2026-11-28T20:00:00+02",
            b"2026-11-28T20:00:00,5Z",
            b"2026-11-28T20:00:00.Z",
            b" 2026-11-28T20:00:00Z",
            b"2026-11-28T20:00:00Z\\n",
            "\uff12\uff10\uff12\uff16-11-28T20:00:00Z".encode(),  # fullwidth digits
            b"2026-11-28T20:00:60Z",
            b"2026-02-30T20:00:00Z",
            b"",
        ]
    ],
    (b'{"journey": "a", "at": "2026-11-30T21:00:01Z", "ok": true, "latency_ms": 1}', "future"),
    (b'{"journey": "a", "at": "2026-11-29T17:00:00Z", "ok": true, "latency_ms": 1}', "future"),
    (b'{"journey": "a", "at": "2026-11-28T21:05:01Z", "ok": true, "latency_ms": 1}', "future"),
    (b'{"journey": "a", "at": "1969-12-31T23:59:59Z", "ok": true, "latency_ms": 1}', "1970"),
    (b'{"journey": "\xff\xfe", "at": "2026-11-28T20:00:00Z", "ok": true}', "not UTF-8"),
    (b"[" * 100_000 + b"]" * 100_000, "not JSON"),
]


@pytest.mark.parametrize(("raw", "reason"), HOSTILE)
def test_a_hostile_line_is_refused_with_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_line(raw, JOURNEYS_NOW)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-28t20:00:00z", "2026-11-28T20:00:00Z"),  # RFC 3339 allows lower case
        ("2026-11-28T20:00:00-00:00", "2026-11-28T20:00:00Z"),
        ("2026-11-28T15:30:00-04:30", "2026-11-28T20:00:00Z"),
        ("2026-11-28T20:00:00.1Z", "2026-11-28T20:00:00.100000Z"),
    ],
)
def test_every_rfc_3339_form_is_accepted(text: str, expected: str) -> None:
    assert journeys.format_at(journeys.check_at(text, JOURNEYS_NOW)) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            '{"journey": "登录 🚀", "at": "2026-11-28T20:00:00Z", "ok": true, "latency_ms": 12}',
            JourneyResult("登录 🚀", parse_rfc3339("2026-11-28T20:00:00Z"), True, 12.0),
        ),
        (
            '{"journey": "; rm -rf /", "at": "2026-11-28T22:00:00+02:00", "ok": false}',
            JourneyResult("; rm -rf /", parse_rfc3339("2026-11-28T20:00:00Z"), False, None),
        ),
        (
            '{"journey": "$(id)", "at": "2026-11-28T20:00:00.123456789Z", "ok": false,'
            ' "latency_ms": null, "probe": "extra fields are ignored"}',
            JourneyResult("$(id)", parse_rfc3339("2026-11-28T20:00:00.123456Z"), False, None),
        ),
        (
            # Five minutes ahead of our clock is still a clock skew, not garbage.
            '{"journey": "--help", "at": "2026-11-28T21:05:00Z", "ok": false, "latency_ms": 0}',
            JourneyResult("--help", parse_rfc3339("2026-11-28T21:05:00Z"), False, 0.0),
        ),
    ],
)
def test_unusual_but_valid_lines_are_accepted(raw: str, expected: JourneyResult) -> None:
    assert parse_line(raw.encode(), JOURNEYS_NOW) == expected


def test_a_file_of_good_and_hostile_lines_keeps_the_good_and_counts_the_rest(rig: Rig) -> None:
    path = rig.path
    good = line(0)
    body = good.encode() + b"\n".join(raw for raw, _ in HOSTILE) + b"\n"
    body += b'{"x": "' + b"y" * (journeys.MAX_LINE_BYTES + 10) + b'"}\n' + line(1).encode()
    path.write_bytes(body)
    result = rig.run()
    assert result.file is not None
    assert result.file.stored == 2
    assert result.file.skipped == len(HOSTILE) + 1
    assert result.file.first_problem.startswith(f"byte {len(good)}: not JSON")


def test_an_overlong_unfinished_line_is_skipped_not_reread_every_tick(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    path.write_bytes(line(0).encode() + b"z" * (3 * journeys.MAX_LINE_BYTES))
    read = journeys.read_new_lines(str(path), None, JOURNEYS_NOW)
    assert read is not None
    assert (read.lines, len(read.results), read.skipped) == (2, 1, 1)
    assert read.state.offset == path.stat().st_size
    with path.open("ab") as f:
        f.write(b"zz\n" + line(1).encode())
    again = journeys.read_new_lines(str(path), read.state, JOURNEYS_NOW)
    assert again is not None
    assert (len(again.results), again.skipped, again.reset) == (1, 1, False)


def test_a_huge_backlog_is_read_over_several_ticks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journeys, "READ_CHUNK", 100)
    monkeypatch.setattr(journeys, "MAX_READ_BYTES", 1000)
    path = tmp_path / "j.jsonl"
    path.write_text("".join(line(i) for i in range(30)))
    state = None
    seen = 0
    for _ in range(10):
        read = journeys.read_new_lines(str(path), state, JOURNEYS_NOW)
        assert read is not None
        assert read.skipped == 0
        seen += len(read.results)
        state = read.state
        if not read.more:
            break
    assert seen == 30
    assert state is not None and state.offset == path.stat().st_size


def test_a_fifo_is_refused_rather_than_read_forever(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    os.mkfifo(path)
    fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)  # a writer, so opening for reading returns
    try:
        with pytest.raises(OSError, match="not a regular file"):
            journeys.read_new_lines(str(path), None, JOURNEYS_NOW)
    finally:
        os.close(fd)


def test_recording_the_same_result_twice_stores_it_once(tmp_path: Path) -> None:
    db = open_db(tmp_path / "state.db")
    result = JourneyResult("login", JOURNEYS_NOW, False, None)
    assert journeys.record_result(db, result) is True
    assert journeys.record_result(db, result) is False
    assert journeys.record_result(db, JourneyResult("login", JOURNEYS_NOW, False, 5.0)) is True


def test_recent_results_are_the_newest_by_time_then_arrival(tmp_path: Path) -> None:
    db = open_db(tmp_path / "state.db")
    for at, latency in [(30.0, 1.0), (10.0, 2.0), (20.0, 3.0), (20.0, 4.0), (5.0, 5.0)]:
        journeys.record_result(db, JourneyResult("login", at, True, latency))
    journeys.record_result(db, JourneyResult("search", 1.0, True, 9.0))
    recent = journeys.recent_results(db, 3, JOURNEYS_NOW)
    assert [r.journey for r in recent] == ["login", "search"]
    assert [(r.at, r.latency_ms) for r in recent[0].results] == [
        (20.0, 3.0),
        (20.0, 4.0),
        (30.0, 1.0),
    ]


@pytest.mark.parametrize(
    "text", ["2026-11-28T20:00:00Z", "2026-11-28T20:00:00.000001Z", "2026-11-28T20:00:00.999999Z"]
)
def test_a_stored_time_writes_back_exactly(text: str) -> None:
    at = journeys.check_at(text, JOURNEYS_NOW)
    assert journeys.format_at(at) == text
    assert journeys.check_at(journeys.format_at(at), JOURNEYS_NOW) == at


def test_a_result_dated_hours_ahead_does_not_hide_a_run_of_failures(tmp_path: Path) -> None:
    rig = Rig(tmp_path)  # window 12, 3 failures in a row are critical
    ahead = {"journey": "login", "at": "2026-11-29T17:00:00Z", "ok": True, "latency_ms": 100}
    rig.path.write_text(
        "".join(line(i) for i in range(12))
        + json.dumps(ahead)
        + "\n"
        + "".join(line(i, ok=False) for i in range(12, 22))
    )
    result = rig.run()
    assert result.file is not None
    assert (result.file.stored, result.file.skipped) == (22, 1)
    assert "future" in (result.file.first_problem or "")
    (outcome,) = result.journeys
    assert outcome.evaluation.failure_run == 10
    assert outcome.evaluation.severity == "critical"


def test_results_stored_far_ahead_of_the_clock_wait_for_their_time(tmp_path: Path) -> None:
    # A row dated hours ahead (stored by an older version, or under a clock that was wrong)
    # must not be "the newest result" until its time comes.
    rig = Rig(tmp_path)
    with rig.db.conn:
        journeys.store_results(
            rig.db, [JourneyResult("login", JOURNEYS_NOW + 20 * 3600, True, 1.0)], "cli"
        )
        journeys.store_results(
            rig.db,
            [JourneyResult("login", JOURNEYS_NOW - 60 + i, False, None) for i in range(5)],
            "cli",
        )
    (outcome,) = rig.run().journeys
    assert outcome.evaluation.failure_run == 5
    assert outcome.evaluation.newest_at == JOURNEYS_NOW - 56
    recent = journeys.recent_results(rig.db, 10, JOURNEYS_NOW + 21 * 3600)
    assert recent[0].results[-1].at == JOURNEYS_NOW + 20 * 3600
