"""The state directory and files are private: created 0700/0600 whatever the umask, and refused
(exit 78, one line) when someone else owns them or could write them, or when they are links."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.support.binaries import run_cli

CONFIG = "sources: {}\ndefaults: {notify: []}\n"


def cli(tmp_path: Path, db: Path, *args: str, umask: int | None = None) -> tuple[int, str]:
    (tmp_path / "incident.yaml").write_text(CONFIG)
    old = os.umask(umask) if umask is not None else None
    try:  # the child inherits the umask, as it would from cron
        result = run_cli(
            ["--config", str(tmp_path / "incident.yaml"), "--db", str(db), *args], cwd=tmp_path
        )
    finally:
        if old is not None:
            os.umask(old)
    return result.code, result.stderr


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_under_umask_000_the_state_directories_are_created_0700_and_the_db_0600(
    tmp_path: Path,
) -> None:
    db = tmp_path / "var" / "lib" / "incident" / "incident.db"
    code, err = cli(tmp_path, db, "poll", umask=0)
    assert code == 0, err
    for directory in (tmp_path / "var", tmp_path / "var" / "lib", db.parent):
        assert mode(directory) == 0o700, directory
    assert mode(db) == 0o600
    assert mode(Path(f"{db}.lock")) == 0o600


@pytest.mark.parametrize("target", ["dir", "db", "db-wal", "lock"])
def test_state_writable_by_others_is_refused_with_exit_78(tmp_path: Path, target: str) -> None:
    db = tmp_path / "state" / "incident.db"
    code, err = cli(tmp_path, db, "poll")
    assert code == 0, err
    Path(f"{db}-wal").touch(mode=0o600)
    path = {
        "dir": db.parent,
        "db": db,
        "db-wal": Path(f"{db}-wal"),
        "lock": Path(f"{db}.lock"),
    }[target]
    path.chmod(mode(path) | 0o022)
    code, err = cli(tmp_path, db, "list")
    assert code == 78
    assert err.count("\n") == 1 and "writable by group or others" in err and str(path) in err
    assert f"run: chmod go-w {path}" in err  # this user's own directory or file
    assert "Traceback" not in err


def test_a_world_writable_directory_holding_the_db_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp: sticky does not help, files can still be planted
    code, err = cli(tmp_path, shared / "incident.db", "poll")
    assert code == 78
    assert "state directory" in err and "writable by group or others" in err
    assert not (shared / "incident.db").exists()
    # Not "chmod go-w" on a shared directory like /tmp: move the DB somewhere private.
    assert "chmod" not in err
    assert "--db ~/.local/state/incident/incident.db (or state.db in the config)" in err


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown a file to someone else")
def test_a_db_owned_by_someone_else_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "incident.db"
    code, err = cli(tmp_path, db, "poll")
    assert code == 0, err
    os.chown(db, 4321, 4321)
    code, err = cli(tmp_path, db, "list")
    assert code == 78
    assert "owned by uid 4321" in err


@pytest.mark.parametrize("link", ["db", "lock"])
def test_a_symbolic_link_at_the_db_or_lock_path_is_never_followed(
    tmp_path: Path, link: str
) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    victim.chmod(0o600)
    db = tmp_path / "incident.db"
    if link == "db":
        db.symlink_to(victim)
    else:
        Path(f"{db}.lock").symlink_to(victim)
    code, err = cli(tmp_path, db, "poll")
    assert code == 78
    assert "symbolic link" in err
    assert victim.read_text() == "precious\n"


def test_incident_test_reports_an_unsafe_state_directory(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    (tmp_path / "incident.yaml").write_text(CONFIG)
    result = run_cli(
        ["--config", "incident.yaml", "--db", str(shared / "incident.db"), "test", "--offline"],
        cwd=tmp_path,
    )
    assert result.code == 1
    assert "writable by group or others" in result.stdout
