"""Start-up stays light: what a cron tick imports, and option values coerced without pydantic
exactly as Typer would coerce them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer
import typer.main

from incident_cli.cli import app
from incident_cli.cli.plain_params import NotPlain, plain_value
from tests.support.binaries import imported_modules, run_cli, serve_get
from tests.test_fast_path import workdir

HEAVY = ("pydantic", "rich", "sqlite_utils", "yaml", "requests", "prometheus_client")


def imported(tmp_path: Path, *args: str) -> list[str]:
    return imported_modules(tmp_path, *args, heavy=HEAVY)[0]


def test_a_json_report_imports_neither_pydantic_nor_rich(tmp_path: Path) -> None:
    modules = imported(tmp_path, "--db", str(tmp_path / "s.db"), "report", "24", "--format", "json")
    assert "pydantic" not in modules
    assert "rich" not in modules


def test_list_json_imports_neither_pydantic_nor_rich(tmp_path: Path) -> None:
    modules = imported(tmp_path, "--db", str(tmp_path / "s.db"), "--wait", "0.5", "list", "--json")
    assert "pydantic" not in modules
    assert "rich" not in modules


def test_sqlite_utils_is_imported_only_to_apply_migrations(tmp_path: Path) -> None:
    db = str(tmp_path / "s.db")
    assert "sqlite_utils" in imported(tmp_path, "--db", db, "list", "--json")  # migrates
    assert "sqlite_utils" not in imported(tmp_path, "--db", db, "list", "--json")
    assert "sqlite_utils" not in imported(tmp_path, "--db", db, "report", "--format", "json")


def test_version_imports_nothing_heavy(tmp_path: Path) -> None:
    assert imported(tmp_path, "--version") == []


def test_an_idle_tick_reads_its_source_without_http_client_email_or_ssl(tmp_path: Path) -> None:
    """A plain http:// source is read over a bare socket: http.client alone would pull in
    email's parser and ssl, a tenth of an idle tick."""
    reads = []

    def answer(headers: Any) -> tuple[int, bytes]:
        reads.append(headers[":path"])
        return 200, json.dumps({"status": "success", "data": {"alerts": []}}).encode()

    with serve_get(answer) as url:
        cwd = workdir(tmp_path / "w", url)
        assert run_cli(["run"], cwd=cwd).code == 0  # creates the state DB
        heavy = ("http.client", "email", "ssl", "requests")
        modules, done = imported_modules(cwd, "run", heavy=heavy)
    assert done.returncode == 0, done.stderr
    assert modules == []
    assert len(reads) == 2  # both ticks did read the source


def test_an_idle_tick_imports_only_the_stage_machinery_it_has_work_for(tmp_path: Path) -> None:
    """recover's worker pool and action kinds, the anomaly checks, sync and the thread pools
    are imported for work, not on every tick; a stored journey result is work for the checks,
    and a due action for recover."""
    empty = json.dumps({"status": "success", "data": {"alerts": []}}).encode()
    machinery = (
        "concurrent.futures",
        "incident_cli.intake.anomaly",
        "incident_cli.intake.sync",
        "incident_cli.recovery.due",
        "incident_cli.recovery.process",
        "subprocess",
    )
    with serve_get(lambda headers: (200, empty)) as url:
        cwd = workdir(tmp_path / "w", url)
        assert run_cli(["run"], cwd=cwd).code == 0  # creates the state DB
        modules, done = imported_modules(cwd, "run", heavy=machinery)
        assert done.returncode == 0, done.stderr
        assert modules == []
        recorded = run_cli(["journey", "record", "login", "--fail", "--latency-ms", "5"], cwd=cwd)
        assert recorded.code == 0, recorded.stderr
        modules, done = imported_modules(cwd, "run", "--json", heavy=machinery)
    assert done.returncode == 0, done.stderr
    assert modules == ["incident_cli.intake.anomaly"]
    detect = next(s for s in json.loads(done.stdout)["stages"] if s["stage"] == "detect-anomalies")
    assert [j["journey"] for j in detect["result"]["journeys"]] == ["login"]


def _typer_coercion(annotation: Any, info: Any, value: Any) -> Any:
    """What Typer itself makes of a value (through pydantic), or the error it raises."""
    from typer._coercion import build_runtime_param, resolve_type_descriptor

    runtime = build_runtime_param(resolve_type_descriptor(annotation, info))
    try:
        return ("ok", runtime._coerce_value(value, param=None, ctx=None))  # type: ignore[arg-type]
    except Exception as exc:
        return ("error", type(exc).__name__)


VALUES = [
    "0", "1", "24", "007", "1.5", "24.0", "0.25", ".5", "5.", "+5", "-5", "-0", " 5", "5 ",
    "1e3", "1_000", "inf", "nan", "-inf", "0x10", "", "abc", "१२", "99999999999999999999",
    "123456789012345", "1234567890123456", "1.000000000000001",
    0, 1, 24, -3, 0.0, 24.0, 1.5, -0.5, True, False, None, "--help", "; rm -rf /", "\udcff",
]  # fmt: skip


@pytest.mark.parametrize("annotation", [str, int, float, bool])
@pytest.mark.parametrize("bounds", [(None, None), (0, None), (1, None), (None, 10)])
def test_plain_values_are_coerced_exactly_as_typer_does(
    annotation: Any, bounds: tuple[Any, Any]
) -> None:
    info = typer.models.OptionInfo(min=bounds[0], max=bounds[1])
    handled = []
    for value in VALUES:
        if value is None:
            continue  # Typer passes None through before coercing
        try:
            ours = plain_value(annotation, info, value)
        except NotPlain:
            continue  # handed to Typer's own coercion
        handled.append(value)
        theirs = _typer_coercion(annotation, info, value)
        assert theirs == ("ok", ours), (annotation, bounds, value)
        assert type(theirs[1]) is type(ours), (annotation, value)
    # The plain path is taken for the everyday values (a coercion rejecting all would pass
    # the loop above without checking anything).
    low, high = bounds
    expected = {
        str: ["abc", "24"],
        int: ["0", "24", 0, 24],
        float: ["1.5", "24.0", 24.0],
        bool: [True, False],
    }[annotation]
    if annotation in (int, float):
        expected = [
            v
            for v in expected
            if (low is None or float(v) >= low) and (high is None or float(v) <= high)
        ]
    assert set(expected) <= set(handled), (annotation, bounds, handled)


@pytest.mark.parametrize(
    ("annotation", "value", "bounds"),
    [
        (int, "+5", (None, None)),
        (int, "1e3", (None, None)),
        (int, " 5", (None, None)),
        (int, "0", (1, None)),
        (int, "24", (None, 10)),
        (float, "nan", (None, None)),
        (float, "inf", (None, None)),
        (str, 5, (None, None)),
    ],
)
def test_the_documented_fallbacks_go_to_typer(
    annotation: Any, value: Any, bounds: tuple[Any, Any]
) -> None:
    info = typer.models.OptionInfo(min=bounds[0], max=bounds[1])
    with pytest.raises(NotPlain):
        plain_value(annotation, info, value)


def test_every_option_of_every_command_gets_the_plain_coercion() -> None:
    from typer.core import _TyperParameter

    from incident_cli.cli.plain_params import PlainParam, install

    group = typer.main.get_command(app)
    ctx = group.make_context("incident", ["list"], resilient_parsing=True)
    install(group, ctx)

    def walk(command: Any) -> None:
        for param in [*command.params, command.get_help_option(ctx)]:
            if isinstance(param, _TyperParameter):
                assert isinstance(param._runtime_param, PlainParam), (command.name, param.name)
        for sub in getattr(command, "commands", {}).values():
            walk(sub)

    walk(group)
