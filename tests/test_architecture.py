"""The package's shape: import layers, module and function sizes, and SQL kept in the store.

The allowlists name today's exceptions by path; each entry goes when its module is split or its
SQL moves behind a store function, and a test fails when an entry is no longer needed, so the
lists only shrink.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "incident_cli"
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 120
# Modules allowed to hold SQL and to talk to sqlite3 / sqlite-utils directly.
STORE = "incident_cli/store/"

LONG_MODULES: set[str] = set()
LONG_FUNCTIONS: set[str] = set()
SQL_OUTSIDE_STORE: set[str] = set()

_SQL = re.compile(
    r"^\s*(SELECT|INSERT|UPDATE|DELETE|CREATE|DROP|ALTER|PRAGMA|BEGIN|SAVEPOINT|ROLLBACK|"
    r"RELEASE|VACUUM|WITH)\b",
    re.IGNORECASE,
)
_DB_CALLS = {"execute", "executemany", "executescript", "conn"}


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _functions(tree: ast.AST, prefix: str = "") -> list[tuple[str, int]]:
    """(qualified name, lines) of every function, methods and nested ones included."""
    out = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            name = prefix + node.name
            assert node.end_lineno is not None
            if not isinstance(node, ast.ClassDef):
                out.append((name, node.end_lineno - node.lineno + 1))
            out.extend(_functions(node, name + "."))
    return out


def _long_functions() -> set[str]:
    found = set()
    for path in _modules():
        for name, size in _functions(ast.parse(path.read_text())):
            if size > MAX_FUNCTION_LINES:
                found.add(f"{_rel(path)}:{name}")
    return found


def _talks_sql(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import) and any(
            a.name in ("sqlite3", "sqlite_utils") for a in node.names
        ):
            return True
        if isinstance(node, ast.ImportFrom) and node.module in ("sqlite3", "sqlite_utils"):
            return True
        if isinstance(node, ast.Attribute) and node.attr in _DB_CALLS:
            return True
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and _SQL.match(node.value)
            and re.search(r"\b(FROM|INTO|SET|TABLE|INDEX|TRANSACTION|IMMEDIATE)\b", node.value)
        ):
            return True
    return False


def test_no_module_is_longer_than_the_limit() -> None:
    long = {_rel(p) for p in _modules() if len(p.read_text().splitlines()) > MAX_MODULE_LINES}
    assert long <= LONG_MODULES, f"over {MAX_MODULE_LINES} lines: {sorted(long - LONG_MODULES)}"
    assert long >= LONG_MODULES, f"short now, drop from LONG_MODULES: {sorted(LONG_MODULES - long)}"


def test_no_function_is_longer_than_the_limit() -> None:
    long = _long_functions()
    assert long <= LONG_FUNCTIONS, (
        f"over {MAX_FUNCTION_LINES} lines: {sorted(long - LONG_FUNCTIONS)}"
    )
    assert long >= LONG_FUNCTIONS, (
        f"short now, drop from LONG_FUNCTIONS: {sorted(LONG_FUNCTIONS - long)}"
    )


def test_only_the_store_writes_sql() -> None:
    found = {_rel(p) for p in _modules() if not _rel(p).startswith(STORE) and _talks_sql(p)}
    assert found <= SQL_OUTSIDE_STORE, f"SQL outside the store: {sorted(found - SQL_OUTSIDE_STORE)}"
    assert found >= SQL_OUTSIDE_STORE, (
        f"no SQL left, drop from SQL_OUTSIDE_STORE: {sorted(SQL_OUTSIDE_STORE - found)}"
    )


# store.incidents / store.batch functions that change an incident's state.
INCIDENT_WRITES = {
    "insert_incident",
    "IncidentBatch",
    "mark_resolved",
    "mark_reopened",
    "mark_acknowledged",
    "mark_escalated",
    "mark_fixed",
    "mark_recovered",
    "set_resolution",
    "set_severity",
    "set_flapping",
    "set_absent_polls",
    "touch",
    "touch_seen",
}
_INCIDENT_MODULES = {"incident_cli.store.incidents", "incident_cli.store.batch"}


def _incident_writes(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    aliases: set[str] = set()
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in _INCIDENT_MODULES:
            found.update(a.name for a in node.names if a.name in INCIDENT_WRITES)
        if isinstance(node, ast.ImportFrom) and node.module == "incident_cli.store":
            aliases.update(
                a.asname or a.name for a in node.names if a.name in ("incidents", "batch")
            )
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and node.attr in INCIDENT_WRITES
        ):
            found.add(node.attr)
    return found


def test_only_the_lifecycle_changes_an_incidents_state() -> None:
    offenders = {
        _rel(p): sorted(found)
        for p in _modules()
        if not _rel(p).startswith((STORE, "incident_cli/lifecycle/"))
        and (found := _incident_writes(p))
    }
    assert offenders == {}


def test_import_contracts_hold() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    if not lint.exists():
        found = shutil.which("lint-imports")
        if found is None:
            pytest.fail("lint-imports is not installed (pip install -e '.[dev]')")
        lint = Path(found)
    run = subprocess.run(
        [str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
