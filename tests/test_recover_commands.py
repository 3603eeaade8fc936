"""Running one command: argv without a shell, its own session, the whole process group killed
on timeout, a bounded tail of its output."""

from __future__ import annotations

import os
import time
from pathlib import Path

from incident_cli.recovery.process import MAX_CAPTURE_BYTES, run_command
from tests.support.recover import script

ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


def process_gone(pid: int) -> bool:
    """Dead, or a zombie waiting for a reaper that is not us."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def wait_gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process_gone(pid):
            return True
        time.sleep(0.05)
    return False


def test_it_keeps_the_exit_code_and_the_output(tmp_path: Path) -> None:
    tool = script(tmp_path, "tool.sh", 'echo "out $1"; echo "err" >&2; exit 3\n')
    result = run_command([str(tool), "x y"], env=ENV, timeout=10)
    assert result.exit_code == 3
    assert result.error is None
    assert not result.ok
    assert "out x y" in result.output and "err" in result.output


def test_no_shell_ever_interprets_an_argument(tmp_path: Path) -> None:
    result = run_command(
        ["echo", "; touch pwned", "$(touch pwned)", "`touch pwned`", "*"],
        env=ENV,
        timeout=10,
        cwd=str(tmp_path),
    )
    assert result.ok
    assert result.output == "; touch pwned $(touch pwned) `touch pwned` *\n"
    assert not (tmp_path / "pwned").exists()


def test_a_program_not_on_path_fails_clearly() -> None:
    result = run_command(["no-such-program-xyz", "--now"], env=ENV, timeout=10)
    assert not result.ok
    assert result.exit_code is None
    assert result.error == "no-such-program-xyz: was not found on PATH"


def test_a_relative_program_is_found_beside_the_config_and_must_be_executable(
    tmp_path: Path,
) -> None:
    (tmp_path / "plain.sh").write_text("#!/bin/sh\necho hi\n")
    result = run_command(["./plain.sh"], env=ENV, timeout=10, cwd=str(tmp_path))
    assert result.error == "./plain.sh: is not an executable file"
    script(tmp_path, "ok.sh", "echo hi\n")
    assert run_command(["./ok.sh"], env=ENV, timeout=10, cwd=str(tmp_path)).ok


def test_a_script_that_cannot_be_executed_fails_to_start(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x7fELFnot really")
    bad.chmod(0o755)
    result = run_command([str(bad)], env=ENV, timeout=10)
    assert result.exit_code is None
    assert result.error is not None and "cannot start" in result.error


def test_the_output_kept_is_a_bounded_tail(tmp_path: Path) -> None:
    chatty = script(
        tmp_path, "chatty.sh", "head -c 3000000 /dev/zero | tr '\\0' 'a'; echo; echo THE-END\n"
    )
    result = run_command([str(chatty)], env=ENV, timeout=30)
    assert result.ok
    assert result.output.rstrip().endswith("THE-END")
    assert len(result.output) < MAX_CAPTURE_BYTES + 100
    assert "bytes before]" in result.output


def test_a_timeout_kills_the_whole_process_group_including_grandchildren(
    tmp_path: Path,
) -> None:
    # The child starts a grandchild that ignores SIGTERM, then waits forever itself.
    parent = script(
        tmp_path,
        "parent.sh",
        """
        sh -c 'trap "" TERM; echo $$ > grandchild.pid; while :; do sleep 0.1; done' &
        echo $$ > child.pid
        echo started
        while :; do sleep 0.1; done
        """,
    )
    started = time.monotonic()
    result = run_command([str(parent)], env=ENV, timeout=1.0, cwd=str(tmp_path))
    elapsed = time.monotonic() - started
    assert result.timed_out
    assert result.error is not None and "timed out after 1s" in result.error
    assert "process group killed" in result.error
    assert "started" in result.output
    assert elapsed < 6
    child = int((tmp_path / "child.pid").read_text())
    grandchild = int((tmp_path / "grandchild.pid").read_text())
    assert wait_gone(child)
    assert wait_gone(grandchild), "the grandchild survived the timeout"


def test_a_background_grandchild_holding_stdout_does_not_hang_the_tick(tmp_path: Path) -> None:
    # A restart script that leaves a daemon running (with our stdout) must still finish.
    starter = script(
        tmp_path,
        "starter.sh",
        """
        sh -c 'echo $$ > daemon.pid; exec sleep 30' &
        echo restarted
        exit 0
        """,
    )
    started = time.monotonic()
    result = run_command([str(starter)], env=ENV, timeout=20, cwd=str(tmp_path))
    assert result.ok
    assert "restarted" in result.output
    assert time.monotonic() - started < 5
    daemon = int((tmp_path / "daemon.pid").read_text())
    # It finished normally: the daemon it started is left alone.
    assert not process_gone(daemon)
    os.kill(daemon, 9)


def test_the_command_runs_in_its_own_session(tmp_path: Path) -> None:
    tool = script(tmp_path, "sid.sh", "ps -o sid= -p $$\n")
    result = run_command([str(tool)], env=ENV, timeout=10)
    assert result.ok
    assert int(result.output.strip()) != os.getsid(0)
