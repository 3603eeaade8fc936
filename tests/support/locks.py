"""Another process holding the state DB: what a busy DB looks like to a tick."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

EXCLUSIVE = "c.execute('BEGIN EXCLUSIVE')\n"  # the write lock, until the holder lets go


@contextlib.contextmanager
def holding(db: Path, script: str, *, seconds: float | None = None) -> Iterator[None]:
    """Another process opens the DB as `c`, runs `script`, and keeps it open until the block
    ends, or (with `seconds`) that long from now if the block ends first."""
    wait = f"import time; time.sleep({seconds})\n" if seconds else "sys.stdin.read()\n"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, sqlite3, sys\n"
            "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            + script
            + "print('ready', flush=True)\n"
            + wait,
            str(db),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "ready\n"
        yield
    finally:
        holder.communicate("", timeout=60)
    assert holder.returncode == 0
