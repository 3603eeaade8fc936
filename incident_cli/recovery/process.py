"""One command in its own process group under a deadline, its output tail kept; orphans stopped."""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from incident_cli.times import format_duration

MAX_CAPTURE_BYTES = 16384  # tail of one command's stdout+stderr kept in memory

KILL_GRACE = 2.0  # seconds between SIGTERM and SIGKILL to a timed-out process group

DRAIN_SECONDS = 0.5  # a background grandchild may hold stdout open; stop reading after this


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    exit_code: int | None
    output: str
    duration: float
    error: str | None = None  # could not start, or timed out
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and self.exit_code == 0

    def describe(self) -> str:
        if self.error:
            return self.error
        return f"exit {self.exit_code} after {self.duration:.1f}s"


class Tail:
    """The last `limit` bytes of a stream, and how many came before them."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.total = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        self.data.extend(chunk)
        if len(self.data) > 2 * self.limit:
            del self.data[: len(self.data) - self.limit]

    def text(self) -> str:
        kept = bytes(self.data[-self.limit :])
        text = kept.decode("utf-8", "replace")
        dropped = self.total - len(kept)
        return f"…[{dropped} bytes before]\n{text}" if dropped else text


def find_program(program: str, path: str, cwd: str | None) -> str | None:
    if "/" in program:
        candidate = os.path.join(cwd or os.getcwd(), program)
        return candidate if os.path.isfile(candidate) and os.access(candidate, os.X_OK) else None
    import shutil  # with bz2 and lzma: not for a tick that runs no command

    return shutil.which(program, path=path)


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the whole process group, then SIGKILL whatever is left of it."""
    for sig, grace in ((signal.SIGTERM, KILL_GRACE), (signal.SIGKILL, 0.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        if grace:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(grace)
    proc.wait()


@dataclass(frozen=True)
class ProcessIdentity:
    """A command's process group, and enough to tell its leader from a later reuse of the pid."""

    pid: int
    pgid: int
    start: int | None  # the leader's start time in clock ticks since boot (Linux /proc)


def _proc_stat(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/<pid>/stat (state, ppid, pgrp, ...), or None when there is none."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()  # the name in (...) may hold anything


def process_start(pid: int) -> int | None:
    fields = _proc_stat(pid)
    return int(fields[19]) if fields and len(fields) > 19 else None


def is_same_process(who: ProcessIdentity) -> bool:
    """Whether who.pid is still that very process, alive (not a zombie), leading who.pgid."""
    if who.pid <= 1 or who.pgid <= 1:
        return False
    if os.path.isdir("/proc/self"):
        fields = _proc_stat(who.pid)
        return (
            fields is not None
            and len(fields) > 19
            and fields[0] != "Z"
            and int(fields[2]) == who.pgid
            and who.start is not None
            and int(fields[19]) == who.start
        )
    try:  # no /proc: the best we can say is that the pid still leads that group
        return os.getpgid(who.pid) == who.pgid
    except OSError:
        return False


def _group_alive(pgid: int) -> bool:
    """Whether any live (non-zombie) process is left in the group."""
    if os.path.isdir("/proc/self"):
        for name in os.listdir("/proc"):
            if name.isdigit():
                fields = _proc_stat(int(name))
                if fields and len(fields) > 2 and fields[0] != "Z" and int(fields[2]) == pgid:
                    return True
        return False
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_orphan(who: ProcessIdentity, grace: float = KILL_GRACE) -> bool | None:
    """Stop the process group of a command whose tick died: SIGTERM, then SIGKILL.

    Only when its leader is still the process that was started (same pid, same start time, not
    a zombie): a command that finished leaves its background children alone, as `run_command`
    does, and a reused pid is someone else's. None: there was nothing of ours to stop;
    True: stopped; False: the group is still alive."""
    if not is_same_process(who):
        return None
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(who.pgid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not _group_alive(who.pgid):
                return True
            time.sleep(0.05)
    return not _group_alive(who.pgid)


def read_into(fd: int, tail: Tail) -> bool:
    """Read what is available; True at end of file."""
    try:
        chunk = os.read(fd, 65536)
    except BlockingIOError:
        return False
    if not chunk:
        return True
    tail.add(chunk)
    return False


def run_command(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    timeout: float,
    cwd: str | None = None,
    on_start: Callable[[ProcessIdentity], None] | None = None,
) -> CommandResult:
    """Run argv (never through a shell) in its own session; on timeout kill its whole process
    group. Keeps the tail of stdout+stderr. `on_start` learns the group as soon as it exists,
    so that the group can be stopped by a later tick if this one dies (see `stop_orphan`).

    A command that exits normally leaves its background children alone (a restart script may
    start the service itself); we stop reading their output shortly after it exits. Only a
    grandchild that starts a session of its own escapes the kill on timeout."""
    argv = tuple(argv)
    started = time.monotonic()
    program = argv[0]
    resolved = find_program(program, env.get("PATH", os.defpath), cwd)
    if resolved is None:
        where = "is not an executable file" if "/" in program else "was not found on PATH"
        return CommandResult(argv, None, "", 0.0, error=f"{program}: {where}")
    try:
        proc = subprocess.Popen(
            list(argv),
            executable=resolved,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
        )
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return CommandResult(argv, None, "", 0.0, error=f"{program}: cannot start: {reason}")
    if on_start is not None:
        # start_new_session: the child leads its own process group, pgid == pid.
        on_start(ProcessIdentity(proc.pid, proc.pid, process_start(proc.pid)))
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    tail = Tail(MAX_CAPTURE_BYTES)
    deadline = started + timeout
    timed_out = eof = False
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while proc.poll() is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            if eof:  # stdout closed but still running: just wait for it
                try:
                    proc.wait(remaining)
                except subprocess.TimeoutExpired:
                    timed_out = True
                break
            if selector.select(min(remaining, 0.2)):
                eof = read_into(fd, tail)
        if timed_out:
            kill_group(proc)
        drain_until = time.monotonic() + DRAIN_SECONDS
        while not eof and time.monotonic() < drain_until:
            if selector.select(0.05):
                eof = read_into(fd, tail)
    proc.stdout.close()
    duration = time.monotonic() - started
    if timed_out:
        return CommandResult(
            argv,
            proc.returncode,
            tail.text(),
            duration,
            error=f"{program}: timed out after {format_duration(timeout)}; process group killed",
            timed_out=True,
        )
    return CommandResult(argv, proc.returncode, tail.text(), duration)
