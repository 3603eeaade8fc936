"""Synthetic-journey results: validating them, reading the JSON-lines file incrementally, storing.

The file is read from the byte offset where the last tick stopped. `journey_files` keeps that
offset with the file's inode, size and first bytes (its "head"); a different inode, a size below
the offset or a changed head means the file was rotated, truncated or replaced, and it is read
again from the start. Re-reading never counts a result twice: the journeys table holds one row per
distinct (journey, at, ok, latency_ms) (migration m004), and rows are inserted OR IGNORE.

Only whole lines are read: a last line without its newline yet is left for the next tick. A line
that is not a valid result is skipped and counted, never fatal.

A result's `at` is a full RFC 3339 date-time. Results are analysed in the order of their `at`
(then of arrival), so one dated more than FUTURE_TOLERANCE (5 minutes) ahead of our clock is
refused: it would stand as the newest result, hiding whatever came after it, until its time.
"""

from __future__ import annotations

import errno
import functools
import json
import math
import os
import re
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import BinaryIO

from incident_cli.store import journeys as store
from incident_cli.store.database import Database
from incident_cli.times import parse_rfc3339

MAX_NAME_CHARS = 200
MAX_LINE_BYTES = 64 * 1024
MAX_LATENCY_MS = 86_400_000.0  # one day: anything slower is a broken probe, not a latency
# A result dated ahead of our clock sorts after every real one and would stand as "the newest
# result" until its time came: one dated a day ahead hid a run of failures (and so a critical)
# for a day. Five minutes covers the clock skew between a probe host and this one.
FUTURE_TOLERANCE = 300.0
HEAD_BYTES = 256
READ_CHUNK = 1 << 20
MAX_READ_BYTES = 64 << 20  # per tick: a huge backlog is caught up over several ticks


@dataclass(frozen=True)
class JourneyResult:
    """One probe run. `latency_ms` is None only for a failed run that reported no latency."""

    journey: str
    at: float
    ok: bool
    latency_ms: float | None


@dataclass(frozen=True)
class FileState:
    """Where reading a journeys file stopped, and what the file looked like then."""

    inode: int
    size: int
    offset: int
    head: str  # hex of the first bytes (up to HEAD_BYTES)


@dataclass(frozen=True)
class FileRead:
    """The complete lines found past the stored offset, and the state to store after them."""

    results: list[JourneyResult]
    state: FileState
    lines: int = 0
    skipped: int = 0
    first_problem: str | None = None
    reset: bool = False  # the file was rotated, truncated or replaced: read from the start
    more: bool = False  # stopped at MAX_READ_BYTES: the next tick goes on from there


# --------------------------------------------------------------------------- validation


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")  # the Unicode "Cc" category


def check_name(name: object) -> str:
    """A journey name: 1..MAX_NAME_CHARS characters of any script, no control characters."""
    if not isinstance(name, str):
        raise ValueError("journey is not a string")
    return _checked_name(name)


@functools.lru_cache(maxsize=4096)  # a file repeats a few names many times
def _checked_name(name: str) -> str:
    if not name.strip():
        raise ValueError("journey is empty")
    if len(name) > MAX_NAME_CHARS:
        raise ValueError(f"journey is longer than {MAX_NAME_CHARS} characters")
    try:
        name.encode("utf-8")  # a lone surrogate from a JSON "\ud800" escape cannot be stored
    except UnicodeEncodeError:
        raise ValueError("journey is not valid unicode") from None
    if _CONTROL.search(name):
        raise ValueError("journey contains control characters")
    return name


def check_latency(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("latency_ms is not a number")
    latency = float(value)
    if not math.isfinite(latency) or latency < 0:
        raise ValueError("latency_ms is not a finite number >= 0")
    if latency > MAX_LATENCY_MS:
        raise ValueError(f"latency_ms is above {MAX_LATENCY_MS:.0f}")
    return latency


def check_at(value: object, now: float) -> float:
    """An RFC 3339 time, rounded to the microsecond (what the timeline can write back)."""
    if not isinstance(value, str):
        raise ValueError("at is not an RFC 3339 string")
    at = _parsed_at(value)
    if at > now + FUTURE_TOLERANCE:
        raise ValueError(
            f"at is more than {FUTURE_TOLERANCE / 60:g} minutes in the future (clock skew?)"
        )
    return at


# RFC 3339 date-time: a full date, a full time and Z or a numeric offset (section 5.6; "T" and
# "Z" may be lower case). times.parse_rfc3339 is lenient (datetime.fromisoformat takes a bare
# date, no seconds, the ISO basic format, and no offset as UTC), which would let a probe's
# local time pass as UTC; the shape is checked first. ASCII digits only.
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}"  # full-date
    r"[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?"  # partial-time
    r"(?:[Zz]|[+-][0-9]{2}:[0-9]{2})"  # time-offset
)
_NOT_RFC3339 = (
    "at is not an RFC 3339 date-time with a time and Z or an offset, like 2026-11-28T20:00:00Z"
)


@functools.lru_cache(maxsize=4096)  # probes of many journeys share their timestamps
def _parsed_at(value: str) -> float:
    if not _RFC3339.fullmatch(value):
        raise ValueError(_NOT_RFC3339)
    try:
        at = parse_rfc3339(value)
    except (ValueError, OverflowError):
        raise ValueError(_NOT_RFC3339) from None
    if not math.isfinite(at) or at < 0:
        raise ValueError("at is before 1970")
    return round(at, 6)


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)  # NaN/Infinity are not numbers


def parse_line(raw: bytes, now: float) -> JourneyResult:
    """One line of the journeys file → a result; ValueError saying what is wrong with it."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("not UTF-8") from None
    try:
        obj = _DECODER.decode(text)
    except RecursionError:
        raise ValueError("not JSON (nested too deeply)") from None
    except ValueError as exc:  # JSONDecodeError, and int literals beyond Python's digit limit
        raise ValueError(f"not JSON ({str(exc)[:80]})") from None
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    for key in ("journey", "at", "ok"):
        if key not in obj:
            raise ValueError(f"missing {key}")
    name = check_name(obj["journey"])
    at = check_at(obj["at"], now)
    ok = obj["ok"]
    if not isinstance(ok, bool):
        raise ValueError("ok is not true or false")
    latency: float | None
    if ok or obj.get("latency_ms") is not None:
        if "latency_ms" not in obj:
            raise ValueError("missing latency_ms")
        latency = check_latency(obj["latency_ms"])
    else:
        latency = None  # a failed run (e.g. a timeout) may have no latency to report
    return JourneyResult(journey=name, at=at, ok=ok, latency_ms=latency)


def format_at(at: float) -> str:
    """Epoch seconds → RFC 3339, with microseconds when there are any (exact for the `at` we
    store, which is rounded to the microsecond)."""
    stamp = datetime.fromtimestamp(at, UTC)
    if stamp.microsecond:
        return stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------- the file


def _complete_lines(
    handle: BinaryIO, start: int, budget: int, more: list[bool]
) -> Iterator[tuple[int, bytes | None]]:
    """(offset after the line, the line without its newline) for each whole line from `start`;
    None instead of the bytes for a line longer than MAX_LINE_BYTES. Stops after about `budget`
    bytes (setting more[0]). Never holds more than one chunk plus one line in memory.

    An unfinished line longer than MAX_LINE_BYTES is consumed too (yielded as None): waiting for
    its end would re-read it every tick, and whatever follows it is skipped as malformed anyway.
    """
    pos = start
    partial = b""
    overlong = False
    while True:
        if pos - start >= budget:
            more[0] = True
            break
        chunk = handle.read(READ_CHUNK)
        if not chunk:
            break
        begin = 0
        while True:
            nl = chunk.find(b"\n", begin)
            if nl < 0:
                rest = chunk[begin:]
                if not overlong and len(partial) + len(rest) > MAX_LINE_BYTES:
                    overlong, partial = True, b""
                if not overlong:
                    partial += rest
                pos += len(rest)
                break
            piece = chunk[begin:nl]
            pos += len(piece) + 1
            if overlong or len(partial) + len(piece) > MAX_LINE_BYTES:
                yield pos, None
            else:
                yield pos, partial + piece
            partial, overlong = b"", False
            begin = nl + 1
    if overlong:
        yield pos, None


def read_new_lines(path: str, prior: FileState | None, now: float) -> FileRead | None:
    """Read the whole lines added to `path` since `prior`; None when the file does not exist
    (the probe has not written yet, or it is between rotations). OSError when unreadable."""
    # O_NONBLOCK: a plain open() of a FIFO with no writer blocks until one comes, and this
    # runs under the tick lock. Opened non-blocking it returns at once, and fstat (of the very
    # file opened, so nothing can be swapped in between) refuses it; a FIFO, a device or a
    # directory would never end or is not ours to read. For a regular file the flag does
    # nothing. O_NOCTTY: a terminal device must not become our controlling terminal.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        handle = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with handle:
        head = handle.read(HEAD_BYTES)
        offset = 0
        reset = False
        if prior is not None:
            same = (
                prior.inode == st.st_ino
                and st.st_size >= prior.offset
                and head[: len(prior.head) // 2].hex() == prior.head
            )
            if same:
                offset = prior.offset
            else:
                reset = True
        handle.seek(offset)
        results: list[JourneyResult] = []
        lines = skipped = 0
        first_problem: str | None = None
        end = offset
        more = [False]
        for after, raw in _complete_lines(handle, offset, MAX_READ_BYTES, more):
            lines += 1
            line_start = end
            end = after
            if raw is None:
                problem: str | None = f"longer than {MAX_LINE_BYTES} bytes"
            elif not raw.strip():
                lines -= 1  # blank lines are not results, nor mistakes
                continue
            else:
                try:
                    results.append(parse_line(raw, now))
                    problem = None
                except ValueError as exc:
                    problem = str(exc)
            if problem is not None:
                skipped += 1
                if first_problem is None:
                    first_problem = f"byte {line_start}: {problem}"
    # The head grows with the file until HEAD_BYTES; it is compared over the stored length.
    state = FileState(inode=st.st_ino, size=max(st.st_size, end), offset=end, head=head.hex())
    return FileRead(
        results=results,
        state=state,
        lines=lines,
        skipped=skipped,
        first_problem=first_problem,
        reset=reset,
        more=more[0],
    )


def load_file_state(db: Database, path: str) -> FileState | None:
    row = store.file_state(db, path)
    return None if row is None else FileState(inode=row[0], size=row[1], offset=row[2], head=row[3])


def save_file_state(db: Database, path: str, state: FileState) -> None:
    store.save_file_state(db, path, state.inode, state.size, state.offset, state.head)


# --------------------------------------------------------------------------- the table


def store_results(db: Database, results: Iterable[JourneyResult], origin: str) -> int:
    """Insert results not stored yet; returns how many were new. Caller holds the write tx."""
    return store.insert_results(
        db, ((r.journey, r.at, int(r.ok), r.latency_ms, origin) for r in results)
    )


@dataclass(frozen=True)
class Recent:
    """The newest results of one journey, oldest first."""

    journey: str
    results: list[JourneyResult] = field(default_factory=list)


def recent_results(db: Database, limit: int, now: float) -> list[Recent]:
    """The newest `limit` results of every journey by `at`, then insertion order (a result's
    own time, not when it reached us: the file and `journey record` interleave), one
    index-ordered query per journey, so the cost does not grow with the table's history.

    Rows dated more than FUTURE_TOLERANCE after `now` (stored under an older, wider tolerance,
    or before the clock was set right) wait until their time: counted now, they would be the
    newest result of every run until then."""
    out = []
    for name in store.names(db):
        rows = store.recent(db, name, now + FUTURE_TOLERANCE, limit)
        rows.reverse()
        out.append(
            Recent(
                journey=name,
                results=[JourneyResult(name, at, bool(ok), lat) for at, ok, lat in rows],
            )
        )
    return out


def record_result(db: Database, result: JourneyResult) -> bool:
    """Store one result from `incident journey record`; False when it was already stored."""
    from incident_cli.store.database import write_tx

    with write_tx(db):
        return store_results(db, [result], "cli") == 1
