"""A tick's wall-clock limit (`--max-runtime`): what is left of it, what used it, what waits."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from typing import Any

DEFAULT_MAX_RUNTIME = 50.0  # well under cron's minute: the next tick finds the lock free
# The PostgreSQL tick lock's lease in seconds (store/pg_lease.py), default 30; tests set a
# short one. Not a config key: the lock is taken before a tick reads its settings from the DB.
LOCK_LEASE_VAR = "INCIDENT_LOCK_LEASE"
DEFAULT_LOCK_LEASE = 30.0


def lock_lease() -> float:
    """INCIDENT_LOCK_LEASE, else 30 s; anything but a positive number of seconds is exit 78."""
    import os

    from incident_cli.errors import ConfigError

    raw = (os.environ.get(LOCK_LEASE_VAR) or "").strip()
    if not raw:
        return DEFAULT_LOCK_LEASE
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not 0 < value < 86400:
        raise ConfigError(
            "environment", LOCK_LEASE_VAR, f"a number of seconds above 0, not {raw!r}"
        )
    return value


class TickRuntime:
    """Started when the tick has its lock. Work asks `within(timeout)` before each wait on a
    peer, stops starting units of work once `expired`, and says what it `spent` and `left`."""

    def __init__(
        self, limit: float | None, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self._monotonic = monotonic
        self._started = monotonic()
        self.spent: dict[str, float] = {}
        self.left: list[str] = []

    def remaining(self) -> float:
        if self.limit is None:
            return math.inf
        return self.limit - (self._monotonic() - self._started)

    @property
    def expired(self) -> bool:
        return self.remaining() <= 0

    def within(self, timeout: float) -> float:
        """`timeout`, cut to what is left of the tick."""
        return min(timeout, max(self.remaining(), 0.0))

    def spend(self, what: str, seconds: float) -> None:
        self.spent[what] = self.spent.get(what, 0.0) + seconds

    def leave(self, what: str) -> None:
        """Note work left for the next tick because the limit was reached."""
        self.left.append(what)

    def overrun(self) -> str:
        """One line: the limit, what was slowest, and what was left."""
        text = f"stopped at its max runtime of {self.limit or 0:g}s (--max-runtime)"
        slow = [(what, secs) for what, secs in self.spent.items() if secs >= 0.1]
        slowest = sorted(slow, key=lambda item: -item[1])[:3]
        if slowest:
            text += "; slowest: " + ", ".join(f"{what} {secs:.1f}s" for what, secs in slowest)
        if self.left:
            text += "; left for the next tick: " + ", ".join(self.left)
        return text


def repeat_exit(ticks: list[int]) -> int:
    """The exit status of several ticks in one invocation (`run --every`).

    A failure of a tick's own job (1, or any other code but 75) in any tick is kept: cron mails
    it and a dead letter must not be hidden by later good ticks. "Try again next tick" (75) is
    returned only when the last tick ended with it — a source that was down for one tick and
    answered again is over; one still down at the end is still news. Every tick leaves its own
    heartbeat, so `incident status` sees each of them anyway.
    """
    tempfail = 75
    failures = [c for c in ticks if c not in (0, tempfail)]
    if failures:
        return max(failures)
    return tempfail if ticks and ticks[-1] == tempfail else 0


class Schedule:
    """Ticks every `every` seconds for `span` seconds, from when the lock is held: tick k
    starts at k * every while k * every <= span (`--every 5s --for 55s`: 12 ticks, at 0s to
    55s). A tick that overruns its slot skips the slots it missed (ticks never pile up).
    SIGTERM or SIGINT ends it between ticks: the tick in progress finishes; a second signal
    acts as it normally would."""

    def __init__(
        self, every: float, span: float, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.every = every
        self.span = span
        self._monotonic = monotonic
        self._start = monotonic()
        self.stopped_by: str | None = None
        self._previous: dict[int, Any] = {}
        self._wake_r = self._wake_w = -1

    def __enter__(self) -> Schedule:
        import os
        import signal

        self._start = self._monotonic()  # from when the lock is held
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        os.set_blocking(self._wake_r, False)
        self._previous_fd = signal.set_wakeup_fd(self._wake_w)
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._previous[signum] = signal.signal(signum, self._on_signal)
        return self

    def __exit__(self, *exc: object) -> None:
        import os
        import signal

        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(self._previous_fd)
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _on_signal(self, signum: int, frame: object) -> None:
        import signal

        if self.stopped_by is not None:  # asked twice: do what the signal normally does
            signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            signal.raise_signal(signum)
            return
        self.stopped_by = signal.Signals(signum).name

    def ticks(self) -> Iterator[int]:
        """Yield 0, 1, 2, … at each tick's start; sleep (woken by a signal) in between."""
        import select

        slot = 0
        while self.stopped_by is None:
            yield slot
            elapsed = self._monotonic() - self._start
            slot = max(slot + 1, math.floor(elapsed / self.every) + 1)
            if slot * self.every > self.span + 1e-9:
                return
            while self.stopped_by is None:
                wait = self._start + slot * self.every - self._monotonic()
                if wait <= 0:
                    break
                ready, _, _ = select.select([self._wake_r], [], [], wait)
                if ready:
                    os_read_all(self._wake_r)


def os_read_all(fd: int) -> None:
    import os

    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        return
