"""Hosts sharing one state DB: each named by INCIDENT_HOSTNAME (default: its hostname), named on
every heartbeat, and `status` shows which host ticked last and each host's last tick."""

from __future__ import annotations

import json
import socket
import sqlite3
from pathlib import Path

from incident_cli.store.connection import open_db
from incident_cli.store.migrations import migrations
from tests.support.binaries import CliResult, run_cli

CONFIG = """
sources:
  prometheus: {type: prometheus, url: "http://127.0.0.1:1"}
channels: {}
log: {file: events.jsonl, format: json}
"""


def on(tmp_path: Path, host: str | None, *args: str) -> CliResult:
    """`incident ARGS` as cron runs it on the host named `host` (None: INCIDENT_HOSTNAME unset)."""
    if not (tmp_path / "incident.yaml").exists():
        (tmp_path / "incident.yaml").write_text(CONFIG)
    env = {"INCIDENT_HOSTNAME": host} if host is not None else None
    return run_cli(
        ["-c", str(tmp_path / "incident.yaml"), "--db", str(tmp_path / "state.db"), *args],
        cwd=tmp_path,
        env=env,
    )


def test_status_shows_each_hosts_last_tick_and_which_host_ticked_last(tmp_path: Path) -> None:
    assert on(tmp_path, "a", "notify").code == 0
    assert on(tmp_path, "b", "notify").code == 0
    assert on(tmp_path, "a", "recover").code == 0
    assert on(tmp_path, "b", "metrics").code == 0  # not a tick: not anyone's last tick
    result = on(tmp_path, "b", "status", "--json", "--expect", "notify")
    assert result.code == 0, result.stdout + result.stderr
    data = json.loads(result.stdout)
    assert data["last_tick_host"] == "a"
    hosts = {h["host"]: h for h in data["hosts"]}
    assert set(hosts) == {"a", "b"}
    assert hosts["a"]["last_command"] == "recover" and hosts["a"]["last_exit"] == 0
    assert hosts["b"]["last_command"] == "notify"
    assert (hosts["a"]["this_host"], hosts["b"]["this_host"]) == (False, True)
    assert hosts["a"]["last_started_at"] <= hosts["a"]["last_run_at"]
    by_command = {c["command"]: c["host"] for c in data["commands"]}
    assert by_command["notify"] == "b" and by_command["recover"] == "a"

    human = on(tmp_path, "a", "status", "--expect", "notify")
    rows = {line.split()[0]: line for line in human.stdout.splitlines() if line[:2] in ("a ", "b ")}
    assert "recover" in rows["a"] and "ticked last, this host" in rows["a"]
    assert "notify" in rows["b"] and "ticked last" not in rows["b"]


def test_the_host_defaults_to_the_machines_hostname(tmp_path: Path) -> None:
    assert on(tmp_path, None, "notify").code == 0
    data = json.loads(on(tmp_path, None, "status", "--json").stdout)
    assert [h["host"] for h in data["hosts"]] == [socket.gethostname()]
    assert data["last_tick_host"] == socket.gethostname()
    assert data["hosts"][0]["this_host"] is True


def test_every_tick_line_of_the_event_log_names_its_host(tmp_path: Path) -> None:
    assert on(tmp_path, "ops-1", "notify").code == 0
    ticks = [
        json.loads(line)
        for line in (tmp_path / "events.jsonl").read_text().splitlines()
        if '"tick"' in line
    ]
    assert [(t["command"], t["host"]) for t in ticks] == [("notify", "ops-1")]


def test_a_host_name_with_spaces_or_control_characters_is_a_config_error(tmp_path: Path) -> None:
    for bad in ("two words", "bell\x07", "x" * 256):
        result = on(tmp_path, bad, "notify")
        assert result.code == 78, result.stderr
        assert result.stderr.count("\n") == 1 and "INCIDENT_HOSTNAME" in result.stderr
        assert "Traceback" not in result.stderr


def test_the_hosts_migration_adds_claim_columns_to_an_old_state_db(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    old = open_db(path, migrate=False)
    migrations.apply(old, stop_before="m013_hosts_and_claims")
    old.conn.execute(
        "INSERT INTO heartbeats (command, last_run_at, last_exit, last_duration)"
        " VALUES ('run', 1, 0, 0.5)"
    )
    old.conn.commit()
    old.close()
    open_db(path).close()
    conn = sqlite3.connect(path)
    try:

        def columns(table: str) -> set[str]:
            return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}

        assert {"claimed_by", "claim_token"} <= columns("actions")
        assert "claimed_by" in columns("notifications")
        assert {"host", "last_started_at"} <= columns("heartbeats")
        assert columns("host_heartbeats") == {
            "host",
            "command",
            "last_started_at",
            "last_run_at",
            "last_exit",
        }
        # A heartbeat from before hosts were recorded names none.
        assert conn.execute("SELECT host FROM heartbeats").fetchall() == [(None,)]
    finally:
        conn.close()
