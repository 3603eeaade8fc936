"""Durations, RFC 3339 timestamps and the clock (epoch seconds as float throughout)."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def now() -> float:
    """The current time; core functions take `now` as an argument and callers pass this."""
    return time.time()


def parse_duration(text: str) -> float:
    """`90s`, `5m`, `2h`, `1d` (also compound `1h30m`) → seconds. Raises ValueError."""
    text = text.strip()
    if not text:
        raise ValueError("empty duration")
    total = 0.0
    pos = 0
    for match in re.finditer(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)", text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(text) or pos == 0:
        raise ValueError(f"{text!r} is not a duration (use e.g. 90s, 5m, 2h, 1d)")
    return total


def format_duration(seconds: float) -> str:
    """Seconds → a short human duration such as `4m 10s`."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {secs}s" if secs else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h" if hours else f"{days}d"


def to_rfc3339(epoch: float | None) -> str | None:
    """Epoch seconds → `2026-11-28T20:30:01Z` (whole seconds, UTC), or None."""
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_FRACTION = re.compile(r"\.(\d+)")


def parse_rfc3339(text: str) -> float:
    """RFC 3339 (any precision, `Z` or offset) → epoch seconds. Raises ValueError."""
    if not isinstance(text, str) or len(text) > 64:
        raise ValueError("not an RFC 3339 timestamp")
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    # Go writes nanoseconds; datetime accepts at most microseconds.
    value = _FRACTION.sub(lambda m: "." + m.group(1)[:6].ljust(6, "0"), value, count=1)
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()
