"""Loaded only by ticks run under libfaketime (tests/support/faults.Ticker): Debian's
libfaketime 0.9.10 with FAKETIME_DONT_FAKE_MONOTONIC=1 fails every time.sleep (Python 3.11
sleeps with clock_nanosleep on the monotonic clock) with EINVAL; sleep through select() instead,
which it leaves alone. Nothing else of the process under test changes."""

import select
import time

_sleep = time.sleep


def _sleep_past_libfaketime(seconds: float) -> None:
    try:
        _sleep(seconds)
    except OSError:
        select.select([], [], [], seconds)


time.sleep = _sleep_past_libfaketime
