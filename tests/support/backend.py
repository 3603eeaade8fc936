"""Which backend a test's state DB is on. A module that runs on both backends uses the
`both_backends` fixture (conftest.py), which registers the test's `state_db` (a SQLite file or
a fresh PostgreSQL database) for its tmp_path; the helpers that open `tmp_path / "state.db"`
ask here first."""

from __future__ import annotations

from pathlib import Path

_WHERE: dict[Path, str] = {}


def use(tmp_path: Path, where: str) -> None:
    _WHERE[tmp_path] = where


def forget(tmp_path: Path) -> None:
    _WHERE.pop(tmp_path, None)


def locate(path: Path) -> str:
    """The state DB for `path` (`tmp_path / "state.db"`): the registered backend's, if any."""
    return _WHERE.get(path.parent, str(path)) if path.name == "state.db" else str(path)


def on_postgres(tmp_path: Path) -> bool:
    return _WHERE.get(tmp_path, "").startswith("postgresql://")
