"""The state DB failing under a tick: disk full, held locked, corrupted, read-only, its WAL
deleted. Each is a real `incident` process; each gives one clear line and the right exit
code, leaves nothing half-written, and the next tick succeeds once the fault is gone."""

from __future__ import annotations

import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.binaries import CliResult, cli_env, run_cli
from tests.support.locks import EXCLUSIVE, holding

RECORD = ["journey", "record", "login", "--ok", "--latency-ms", "5"]


def make_db(tmp_path: Path) -> Path:
    db = tmp_path / "state" / "incident.db"
    result = run_cli(["--db", str(db), *RECORD], cwd=tmp_path)
    assert result.code == 0, result.stderr
    return db


def journeys(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("SELECT count(*) FROM journeys").fetchone()[0])
    finally:
        conn.close()


def run_as(
    cwd: Path,
    args: list[str],
    prefix: list[str] | None = None,
    preexec: Callable[[], None] | None = None,
) -> CliResult:
    """`incident ARGS` in a fresh process, started through `prefix` (setpriv) or `preexec`."""
    completed = subprocess.run(
        [*(prefix or []), sys.executable, "-m", "incident_cli", *args],
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        preexec_fn=preexec,
    )
    return CliResult(completed.returncode, completed.stdout, completed.stderr)


def one_clear_line(result: CliResult) -> str:
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_disk_full_is_exit_75_half_writes_nothing_and_recovers(tmp_path: Path) -> None:
    db = make_db(tmp_path)
    before = journeys(db)

    def small_files() -> None:  # what `prlimit --fsize=4000` does: no file may grow past it
        resource.setrlimit(resource.RLIMIT_FSIZE, (4000, 4000))

    result = run_as(tmp_path, ["--db", str(db), *RECORD], preexec=small_files)
    assert result.code == 75, result.stderr
    line = one_clear_line(result)
    assert line.startswith(f"incident: cannot write the state DB {db}: no space left")
    assert "the next tick carries on once there is space" in line
    assert journeys(db) == before
    again = run_cli(["--db", str(db), *RECORD], cwd=tmp_path)
    assert again.code == 0, again.stderr
    assert journeys(db) == before + 1
    assert run_cli(["--db", str(db), "state", "check"], cwd=tmp_path).code == 0


def test_a_db_held_locked_past_the_busy_timeout_is_exit_75_then_the_next_tick_runs(
    tmp_path: Path,
) -> None:
    db = make_db(tmp_path)
    before = journeys(db)
    with holding(db, EXCLUSIVE):
        started = time.monotonic()
        result = run_cli(["--db", str(db), *RECORD], cwd=tmp_path)
        assert time.monotonic() - started >= 9.5  # it waited the busy timeout first
    assert result.code == 75, result.stderr
    assert one_clear_line(result) == (
        f"incident: the state DB {db} is locked by another process for longer than the busy"
        " timeout (10 s); nothing was changed, the next tick tries again"
    )
    again = run_cli(["--db", str(db), *RECORD], cwd=tmp_path)
    assert again.code == 0, again.stderr
    assert journeys(db) == before + 1


def test_a_corrupted_page_says_how_to_check_and_restore(tmp_path: Path) -> None:
    db = make_db(tmp_path)
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page = conn.execute("PRAGMA page_size").fetchone()[0]
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'journeys'").fetchone()
    conn.close()
    with open(db, "r+b") as fh:
        fh.seek((root[0] - 1) * page)
        fh.write(b"\x5a" * page)
    result = run_cli(["--db", str(db), *RECORD], cwd=tmp_path)
    assert result.code == 1
    line = one_clear_line(result)
    assert line.startswith(f"incident: the state DB {db} is damaged (")
    assert "`incident state check`" in line
    assert "`incident state backup`" in line
    checked = run_cli(["--db", str(db), "state", "check"], cwd=tmp_path)
    assert checked.code == 1
    assert checked.stdout.startswith("problem: ")


def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    db = make_db(tmp_path)
    with open(db, "r+b") as fh:
        fh.write(b"\x00garbage" * 512)
    result = run_cli(["--db", str(db), "list"], cwd=tmp_path)
    assert result.code == 1
    line = one_clear_line(result)
    assert "is damaged (file is not a database)" in line
    assert "`incident state check`" in line


def test_a_read_only_state_directory(tmp_path: Path) -> None:
    prefix: list[str] = []
    base = tmp_path
    if os.geteuid() == 0:
        # root writes anywhere: run as nobody, who owns the state, in a directory nobody can
        # reach (pytest's tmp_path is under a 0700 directory of root's).
        base = Path(tempfile.mkdtemp(prefix="incident-ro-"))
        os.chmod(base, 0o711)
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    try:
        db = base / "state" / "incident.db"
        db.parent.mkdir(mode=0o700)
        if prefix:
            os.chown(db.parent, 65534, 65534)
        made = run_as(base, ["--db", str(db), *RECORD], prefix)
        assert made.code == 0, made.stderr
        os.chmod(db.parent, 0o500)
        result = run_as(base, ["--db", str(db), *RECORD], prefix)
        os.chmod(db.parent, 0o700)
        assert result.code == 1, result.stderr
        line = one_clear_line(result)
        assert line.startswith(f"incident: cannot write the state DB {db} (")
        assert "must be writable by this user" in line
        assert journeys(db) == 1
    finally:
        if base != tmp_path:
            shutil.rmtree(base)


def test_a_wal_deleted_under_a_running_process_then_the_next_tick(tmp_path: Path) -> None:
    db = make_db(tmp_path)
    before = journeys(db)
    with holding(
        db,
        "c.execute('PRAGMA wal_autocheckpoint = 0')\n"
        'c.execute("INSERT INTO journeys (journey, at, ok, origin)'
        " VALUES ('held', 1, 1, 'cli')\")\n"
        "os.unlink(sys.argv[1] + '-wal')\n",
    ):
        result = run_cli(["--db", str(db), *RECORD], cwd=tmp_path)
    assert result.code == 1, result.stderr
    line = one_clear_line(result)
    assert line.startswith(f"incident: I/O error on the state DB {db} (")
    assert "-wal file deleted" in line
    # The holder checkpointed from its open WAL as it closed: nothing is lost, the next tick runs.
    again = run_cli(["--db", str(db), *RECORD], cwd=tmp_path)
    assert again.code == 0, again.stderr
    assert journeys(db) == before + 2
    assert run_cli(["--db", str(db), "state", "check"], cwd=tmp_path).code == 0


def test_a_wal_deleted_after_a_killed_tick_loses_only_its_last_commits(tmp_path: Path) -> None:
    db = make_db(tmp_path)
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    before = journeys(db)
    killed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, signal, sqlite3, sys\n"
            "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            'c.execute("INSERT INTO journeys (journey, at, ok, origin)'
            " VALUES ('lost', 1, 1, 'cli')\")\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n",
            str(db),
        ],
        timeout=30,
    )
    assert killed.returncode == -9
    Path(f"{db}-wal").unlink()
    result = run_cli(["--db", str(db), *RECORD], cwd=tmp_path)
    assert result.code == 0, result.stderr
    assert journeys(db) == before + 1
    assert run_cli(["--db", str(db), "state", "check"], cwd=tmp_path).code == 0


def test_inside_run_a_stage_that_meets_a_full_disk_is_75_and_the_rest_still_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from incident_cli import stages
    from incident_cli.config.load import load_config
    from incident_cli.store.connection import open_db

    db = open_db(tmp_path / "incident.db")

    def full(*_: object) -> stages.StageResult:
        exc = sqlite3.OperationalError("database or disk is full")
        exc.sqlite_errorname = "SQLITE_FULL"  # type: ignore[attr-defined]
        raise exc

    ran: list[str] = []

    def fine(*_: object) -> stages.StageResult:
        ran.append("notify")
        return stages.StageResult("notify")

    monkeypatch.setitem(stages._RUNNERS, "poll", full)
    monkeypatch.setitem(stages._RUNNERS, "detect-anomalies", fine)
    monkeypatch.setitem(stages._RUNNERS, "notify", fine)
    monkeypatch.setitem(stages._RUNNERS, "recover", fine)
    results = stages.run_tick(
        db, load_config(tmp_path / "none.yaml", {}, must_exist=False), time.time
    )
    db.close()
    assert results[0].code == 75
    assert results[0].errors == [
        f"cannot write the state DB {tmp_path / 'incident.db'}: no space left (disk full or a"
        " file-size limit: database or disk is full); nothing was half-written, the next tick"
        " carries on once there is space"
    ]
    assert len(ran) == 4
