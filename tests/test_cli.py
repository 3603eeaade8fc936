"""The CLI: exit codes, one-line errors, JSON shapes, and that bad input stores nothing."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
import responses
from typer.testing import CliRunner

from incident_cli.cli import app
from incident_cli.store.connection import TickLock, open_db
from tests.support.binaries import invoke
from tests.support.builders import prom_body

PROM = "http://prom.test"

CONFIG = f"""
sources:
  prometheus: {{type: prometheus, url: "{PROM}", timeout: 2s}}
rules:
  - {{name: backend-down, match: {{alertname: BackendServiceDown}}, severity: critical}}
"""

INCIDENT_KEYS = {
    "id",
    "key",
    "title",
    "status",
    "severity",
    "rule",
    "handler",
    "source",
    "labels",
    "annotations",
    "started_at",
    "opened_at",
    "acknowledged_at",
    "resolved_at",
    "resolution",
    "flapping",
    "reopen_count",
}


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "incident.yaml"
    path.write_text(CONFIG)
    return path


def incident_count(tmp_path: Path) -> int:
    db_path = tmp_path / "incident.db"
    if not db_path.exists():
        return 0
    return int(open_db(db_path).execute("SELECT count(*) FROM incidents").fetchone()[0])


@responses.activate
def test_poll_then_list_and_show_give_the_spec_json(config: Path, tmp_path: Path) -> None:
    responses.get(f"{PROM}/api/v1/alerts", json=prom_body())
    result = invoke("-c", str(config), "poll")
    assert result.exit_code == 0, result.output
    assert result.stdout == ""  # silent on success: cron mails any output
    listed = json.loads(invoke("-c", str(config), "list", "--json").stdout)
    assert len(listed) == 2
    assert all(set(item) == INCIDENT_KEYS for item in listed)
    backend = next(i for i in listed if i["rule"] == "backend-down")
    assert backend["severity"] == "critical" and backend["source"] == "prometheus"
    assert backend["started_at"] == "2026-11-28T20:29:14Z"
    assert backend["acknowledged_at"] is None and backend["flapping"] is False
    shown = json.loads(invoke("-c", str(config), "show", str(backend["id"]), "--json").stdout)
    assert set(shown) >= INCIDENT_KEYS
    assert {"alerts", "timeline", "actions", "notifications"} <= set(shown)
    assert set(shown["timeline"][0]) >= {"at", "kind", "message", "data"}
    assert shown["timeline"][0]["kind"] == "opened"


@responses.activate
def test_ack_and_resolve_name_who_and_show_in_list(config: Path) -> None:
    responses.get(f"{PROM}/api/v1/alerts", json=prom_body())
    invoke("-c", str(config), "poll")
    ack = invoke("-c", str(config), "ack", "1", "--by", "alice", "--note", "looking")
    assert ack.exit_code == 0 and "acknowledged by alice" in ack.stdout
    resolved = invoke("-c", str(config), "resolve", "1", "--false-positive", "--by", "bob")
    assert resolved.exit_code == 0
    item = json.loads(invoke("-c", str(config), "list", "--status", "resolved", "--json").stdout)[0]
    assert (item["id"], item["status"], item["resolution"]) == (1, "resolved", "false_positive")
    assert item["acknowledged_at"] is not None
    timeline = json.loads(invoke("-c", str(config), "show", "1", "--json").stdout)["timeline"]
    actors = {(e["kind"], e["actor"]) for e in timeline}
    assert ("acknowledged", "alice") in actors and ("resolved", "bob") in actors
    open_now = json.loads(invoke("-c", str(config), "list", "--json").stdout)
    assert [i["id"] for i in open_now] == [2]


def test_unknown_incident_and_bad_usage_exit_codes(config: Path) -> None:
    missing = invoke("-c", str(config), "show", "99")
    assert missing.exit_code == 1 and missing.stderr.strip() == "incident: no incident 99"
    for args, message in (
        (("list", "--status", "weird"), "--status must be one of open, acknowledged, resolved"),
        (("frobnicate",), "No such command 'frobnicate'"),
        (("show",), "Missing argument 'ID'"),
    ):
        result = invoke("-c", str(config), *args)
        assert result.exit_code == 2, args
        assert message in result.stderr, (args, result.stderr)
    version = invoke("--version")
    assert version.exit_code == 0 and version.stdout.startswith("incident ")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("sources: {}\nunknown_section: 1\n", "unknown_section: unknown key"),
        ("rules: [\n", "invalid YAML"),
        ("rules:\n  - {name: x, match: {a: b}, handler: nope}\n", "unknown handler"),
        ("defaults: {notify: [slack]}\n", "unknown channel 'slack'"),
        ("incidents: {resolve_after: soon}\n", "not a duration"),
        ("sources:\n  x: {type: zabbix, url: 'http://z'}\n", "unknown source type"),
    ],
)
def test_a_broken_config_exits_78_with_one_line_and_stores_nothing(
    tmp_path: Path, text: str, fragment: str
) -> None:
    path = tmp_path / "incident.yaml"
    path.write_text(text)
    result = invoke("-c", str(path), "poll")
    assert result.exit_code == 78
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0] and str(path) in lines[0]
    assert "Traceback" not in result.output
    assert not (tmp_path / "incident.db").exists()


def test_a_missing_explicit_config_is_an_error_but_no_default_file_is_fine(tmp_path: Path) -> None:
    assert invoke("-c", str(tmp_path / "nope.yaml"), "list").exit_code == 78
    assert invoke("--db", str(tmp_path / "x.db"), "list", "--json").stdout.strip() == "[]"


@pytest.mark.parametrize(
    "reply",
    [
        {"status": 500, "body": "internal error"},
        {"status": 200, "body": "<html>not json</html>"},
        {"status": 200, "json": {"status": "success", "data": {"alerts": "nope"}}},
        {"status": 200, "json": [{"labels": {}}]},
        {"status": 403, "body": "forbidden"},
    ],
)
@responses.activate
def test_a_broken_source_exits_75_changes_nothing_in_one_line(
    config: Path, tmp_path: Path, reply: dict[str, Any]
) -> None:
    responses.get(f"{PROM}/api/v1/alerts", json=prom_body())
    assert invoke("-c", str(config), "poll").exit_code == 0
    before = json.loads(invoke("-c", str(config), "list", "--json").stdout)
    responses.replace(responses.GET, f"{PROM}/api/v1/alerts", **reply)
    # The first failure is said; a repeat only with -v (cron mails every line).
    for verbose in ([], ["-v"]):
        result = invoke("-c", str(config), *verbose, "poll")
        assert result.exit_code == 75
        assert len(result.stderr.strip().splitlines()) == 1
        assert "prometheus" in result.stderr and "Traceback" not in result.output
    assert json.loads(invoke("-c", str(config), "list", "--json").stdout) == before


@responses.activate
def test_a_one_mebibyte_label_value_is_handled(config: Path, tmp_path: Path) -> None:
    body = prom_body()
    body["data"]["alerts"] = [
        {
            "labels": {"alertname": "Huge", "blob": "x" * (1024 * 1024), "cmd": "; rm -rf /"},
            "annotations": {"summary": "$(id) `id` --help"},
            "state": "firing",
            "activeAt": "2026-11-28T20:29:14Z",
        }
    ]
    responses.get(f"{PROM}/api/v1/alerts", json=body)
    result = invoke("-c", str(config), "poll")
    assert result.exit_code == 0, result.stderr
    assert incident_count(tmp_path) == 1
    listed = invoke("-c", str(config), "list")
    assert listed.exit_code == 0 and "Huge" in listed.stdout


def test_the_state_db_is_private_and_in_wal_mode(tmp_path: Path) -> None:
    db = open_db(tmp_path / "state" / "incident.db")
    mode = stat.S_IMODE(os.stat(tmp_path / "state" / "incident.db").st_mode)
    assert mode == 0o600
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = set(db.table_names())
    assert {"incidents", "alerts", "timeline", "actions", "notifications", "heartbeats"} <= tables
    applied = [r["name"] for r in db.query("SELECT name FROM _sqlite_migrations ORDER BY id")]
    assert applied[0] == "m001_initial"
    columns = {c.name for c in db["incidents"].columns}
    assert {"key", "status", "started_at", "opened_at", "resolution", "reopen_count"} <= columns


@responses.activate
def test_a_second_tick_exits_75_while_the_lock_is_held(config: Path, tmp_path: Path) -> None:
    responses.get(f"{PROM}/api/v1/alerts", json=prom_body())
    with TickLock(tmp_path / "incident.db"):
        result = invoke("-c", str(config), "poll")
        assert result.exit_code == 75 and "lock" in result.stderr
    assert invoke("-c", str(config), "poll").exit_code == 0


@responses.activate
def test_poll_dry_run_changes_nothing(config: Path, tmp_path: Path) -> None:
    responses.get(f"{PROM}/api/v1/alerts", json=prom_body())
    result = invoke("-c", str(config), "poll", "--dry-run")
    assert result.exit_code == 0 and "would have: opened 2" in result.stdout
    assert incident_count(tmp_path) == 0


def test_every_command_and_option_has_help_text() -> None:
    import typer.main

    def walk(command: Any, path: str) -> list[str]:
        missing = [] if command.help else [f"{path} has no help"]
        for param in command.params:
            if param.param_type_name == "option" and not param.help:
                missing.append(f"{path} {param.name} has no help")
        for name, sub in getattr(command, "commands", {}).items():
            missing += walk(sub, f"{path} {name}")
        return missing

    group = typer.main.get_command(app)
    assert len(getattr(group, "commands", {})) >= 15
    assert walk(group, "incident") == []


def test_an_absurd_incident_id_is_simply_not_found(config: Path) -> None:
    result = invoke("-c", str(config), "show", "99999999999999999999999")
    assert result.exit_code == 1 and "no incident" in result.stderr


@responses.activate
def test_show_prints_sent_notifications_and_hostile_titles(tmp_path: Path) -> None:
    config = tmp_path / "incident.yaml"
    config.write_text(
        f"sources:\n  prometheus: {{type: prometheus, url: '{PROM}'}}\n"
        "channels:\n  slack: {type: slack, webhook_url: 'https://hooks.test/x', rate_limit: 'off'}\n"
        "defaults: {notify: [slack]}\n"
    )
    body = prom_body()
    body["data"]["alerts"][0]["labels"]["service"] = "[bold]x[/] [/]"
    responses.get(f"{PROM}/api/v1/alerts", json=body)
    responses.post("https://hooks.test/x", body="ok")
    assert invoke("-c", str(config), "poll").exit_code == 0
    assert invoke("-c", str(config), "notify").exit_code == 0
    shown = invoke("-c", str(config), "show", "1")
    assert shown.exit_code == 0, shown.stderr
    assert "sent" in shown.stdout and "[bold]x[/] [/]" in shown.stdout
    listed = invoke("-c", str(config), "list")
    assert listed.exit_code == 0 and "[bold]x[/]" in listed.stdout


def test_odd_text_options_are_usage_errors_or_stored_safely(config: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    for args, message in (
        (("list", "--since", "nan"), "--since takes a positive number of hours"),
        (("metrics", "--textfile", ""), "--textfile needs a file path"),
    ):
        result = invoke("-c", str(config), *args)
        assert result.exit_code == 2, args
        assert message in result.stderr, (args, result.stderr)
    db = open_db(tmp_path / "incident.db")
    db.conn.execute("BEGIN IMMEDIATE")
    db.conn.execute(
        "INSERT INTO incidents (key, title, status, severity, rule, handler, source, labels, annotations, opened_at, updated_at)"
        " VALUES ('k', 't', 'open', 'warning', 'default', 'default', 'p', '{}', '{}', 1, 1)"
    )
    db.conn.execute("COMMIT")
    no_name = invoke("-c", str(config), "ack", "1", "--by", "")
    assert no_name.exit_code == 2
    assert "--by needs a name" in no_name.stderr
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "incident_cli",
            "-c",
            str(config),
            "ack",
            "1",
            b"--by",
            b"\xff\xfeop",
            b"--note",
            b"caf\xe9",
        ],
        capture_output=True,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    actors = [
        r["actor"] for r in open_db(tmp_path / "incident.db").query("SELECT actor FROM timeline")
    ]
    assert actors == ["\ufffd\ufffdop", "\ufffd\ufffdop"]


def test_help_lists_the_tick_stages_in_tick_order_then_the_rest_by_use() -> None:
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "100"})
    assert result.exit_code == 0
    section = result.stdout.split("Commands:", 1)[1]
    listed = [line.split()[0] for line in section.splitlines() if line.startswith("  ")]
    assert listed[:6] == ["poll", "detect-anomalies", "sync", "recover", "notify", "run"]
    by_use = ["list", "show", "ack", "resolve", "report", "status", "metrics", "test"]
    assert listed[6 : 6 + len(by_use)] == by_use
    assert [name for name in listed if name in ("config", "journey", "archive", "cron")] == [
        "config",
        "journey",
        "archive",
        "cron",
    ]
