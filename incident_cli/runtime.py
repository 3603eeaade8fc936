"""A tick's wall-clock limit (`--max-runtime`): what is left of it, what used it, what waits."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

DEFAULT_MAX_RUNTIME = 50.0  # well under cron's minute: the next tick finds the lock free


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
