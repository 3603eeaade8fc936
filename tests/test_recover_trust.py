"""Recovery does not trust the state file: what runs is planned again from the config, and a
command gets a minimal, bounded environment."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from incident_cli.config.model import Config
from incident_cli.recovery.tick import recover_due
from tests.support import backend
from tests.support.binaries import run_cli
from tests.support.recover import (
    T0,
    actions,
    alert,
    db_for,
    fire,
    load,
    recovery_config,
    runs,
    script,
    timeline,
)

pytestmark = pytest.mark.usefixtures("both_backends")

EVIL = 'touch "$(dirname "$0")/pwned"\n'


def pwned(tmp_path: Path) -> bool:
    return (tmp_path / "pwned").exists()


def tamper(tmp_path: Path, action_id: int, **params: object) -> None:
    """What a local user who can write the DB does: rewrite an action row's params."""
    db = db_for(tmp_path)
    row = db.conn.execute("SELECT params FROM actions WHERE id = ?", (action_id,)).fetchone()
    stored = json.loads(row[0])
    stored.update(params)
    db.conn.execute(
        "UPDATE actions SET params = ?, command = ? WHERE id = ?",
        (json.dumps(stored), json.dumps(["./evil.sh"]), action_id),
    )
    db.close()


RULES = """
defaults: {notify: []}
security: {auto_block: true}
rules:
  - name: down
    match: {alertname: Down}
    handler: service_down
    recovery: {commands: [[./fix.sh, "{service}"], [./fix.sh, again]], timeout: 10s}
  - name: slow
    match: {alertname: Slow}
    handler: performance_issue
    diagnostics: {commands: [[./fix.sh, diag]], queries: []}
  - name: spike
    match: {alertname: Spike}
    handler: security_incident
    security: {ip_label: source_ip, block_command: [./fix.sh, ban, "{ip}"]}
"""


def setup(tmp_path: Path, rules: str = RULES, env: dict[str, str] | None = None) -> Config:
    script(tmp_path, "fix.sh", 'echo "$@" >> runs.log\n')
    script(tmp_path, "evil.sh", EVIL)
    return load(recovery_config(tmp_path, rules), env)


@pytest.mark.parametrize(
    ("alertname", "labels", "forged", "expected"),
    [
        ("Down", {"service": "api"}, {"template": ["./evil.sh"]}, ["api", "again"]),
        ("Down", {"service": "api"}, {"then": [["./evil.sh"]]}, ["api", "again"]),
        ("Slow", {}, {"commands": [["./evil.sh"]]}, ["diag"]),
        ("Spike", {"source_ip": "203.0.113.9"}, {"template": ["./evil.sh"]}, ["ban 203.0.113.9"]),
    ],
)
def test_a_tampered_action_row_runs_the_rules_command_never_its_own(
    tmp_path: Path,
    alertname: str,
    labels: dict[str, str],
    forged: dict[str, object],
    expected: list[str],
) -> None:
    config = setup(tmp_path)
    db = db_for(tmp_path)
    fire(db, config, T0, alert(alertname=alertname, **labels))
    action_id = next(a["id"] for a in actions(db) if a["kind"] != "escalate")
    db.close()
    tamper(tmp_path, action_id, **forged)
    recover_due(db_for(tmp_path), config, T0 + 1)
    assert not pwned(tmp_path)
    assert runs(tmp_path) == expected


def test_a_tampered_row_never_runs_through_the_cli_either(tmp_path: Path) -> None:
    setup(tmp_path)
    db = db_for(tmp_path)
    now = time.time() - 10  # the CLI's clock is the real one
    fire(db, load(tmp_path / "incident.yaml"), now, alert(alertname="Down", service="api"))
    db.close()
    tamper(tmp_path, 1, template=["./evil.sh"], then=[])
    result = run_cli(
        ["--config", "incident.yaml", "--db", backend.locate(tmp_path / "state.db"), "recover"],
        cwd=tmp_path,
        env={"AUTO_RECOVERY_ENABLED": "true"},
    )
    assert result.code == 0, result.stderr
    assert not pwned(tmp_path)
    assert runs(tmp_path) == ["api", "again"]


def test_an_action_pointing_at_a_plan_the_rule_no_longer_has_is_refused(tmp_path: Path) -> None:
    config = setup(tmp_path)
    db = db_for(tmp_path)
    fire(db, config, T0, alert(alertname="Down", service="api"))
    db.close()
    tamper(tmp_path, 1, plan=7)
    result = recover_due(db_for(tmp_path), config, T0 + 1)
    assert [a.outcome for a in result.actions] == ["refused"]
    assert "no longer plans" in (result.actions[0].detail or "")
    assert runs(tmp_path) == [] and not pwned(tmp_path)


def test_the_incidents_handler_column_is_not_what_plans_actions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A row naming another handler (any importable function) is neither imported nor called:
    # the rule in the config names the handler, at planning time and at run time.
    (tmp_path / "evilhandler.py").write_text(
        "from pathlib import Path\n"
        "def plan(incident, alert, rule):\n"
        "    Path(__file__).with_name('pwned').touch()\n"
        "    return []\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    config = setup(tmp_path)
    db = db_for(tmp_path)
    fire(db, config, T0, alert(alertname="Down", service="api"))
    db.conn.execute("UPDATE incidents SET handler = 'evilhandler:plan'")
    recover_due(db, config, T0 + 1)
    # Resolve it, then fire again within reopen_within: the reopen plans again.
    fire(db, config, T0 + 2)
    fire(db, config, T0 + 3)
    fire(db, config, T0 + 4, alert(alertname="Down", service="api"))
    assert "reopened" in [e["kind"] for e in timeline(db)]
    assert not pwned(tmp_path)


class _Health(BaseHTTPRequestHandler):
    paths: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).paths.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health() -> Iterator[tuple[str, list[str]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    _Health.paths = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Health.paths
    server.shutdown()
    server.server_close()


def test_a_tampered_verify_url_is_never_fetched(
    tmp_path: Path, health: tuple[str, list[str]]
) -> None:
    base, paths = health
    rules = f"""
    defaults: {{notify: []}}
    rules:
      - name: down
        match: {{alertname: Down}}
        handler: service_down
        recovery: {{commands: [[./fix.sh]], verify: {{http: "{base}/health", within: 1m}}}}
    """
    config = setup(tmp_path, rules)
    db = db_for(tmp_path)
    fire(db, config, T0, alert(alertname="Down"))
    db.close()
    tamper(tmp_path, 1, verify={"http": f"{base}/evil", "within": 60})
    result = recover_due(db_for(tmp_path), config, T0 + 1)
    assert [a.outcome for a in result.actions] == ["succeeded"]
    assert paths == ["/health"]


# --------------------------------------------------------------------------- environment

ENV_RULES = """
defaults: {notify: []}
recovery: {env_passthrough: [EXTRA_VAR]}
rules:
  - name: down
    match: {alertname: Down}
    handler: service_down
    recovery: {commands: [[./envdump.sh]], timeout: 10s}
"""


def dumped_env(tmp_path: Path) -> dict[str, str]:
    lines = (tmp_path / "env.out").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def test_a_command_gets_a_minimal_environment_and_what_env_passthrough_names(
    tmp_path: Path,
) -> None:
    script(tmp_path, "envdump.sh", 'env > "$(dirname "$0")/env.out"\n')
    config = load(
        recovery_config(tmp_path, ENV_RULES),
        {
            "SLACK_WEBHOOK_URL": "https://hooks.slack.example/T/B/secret",
            "AWS_SECRET_ACCESS_KEY": "aws-secret",
            "EXTRA_VAR": "wanted",
            "LANG": "C.UTF-8",
            "TZ": "UTC",
            "INCIDENT_CONFIG": "/etc/incident/incident.yaml",
            "INCIDENT_DB": "postgresql://incident:pg-s3cret@db.example/incident",
            "INCIDENT_WEBHOOK_URL": "https://hooks.example/abc",
        },
    )
    db = db_for(tmp_path)
    fire(db, config, T0, alert(alertname="Down", service="api"))
    result = recover_due(db, config, T0 + 1)
    assert [a.outcome for a in result.actions] == ["succeeded"]
    env = dumped_env(tmp_path)
    assert env["EXTRA_VAR"] == "wanted"
    assert env["LANG"] == "C.UTF-8" and env["TZ"] == "UTC" and env["HOME"] == str(tmp_path)
    assert env["INCIDENT_CONFIG"] == "/etc/incident/incident.yaml"
    assert env["INCIDENT_LABEL_SERVICE"] == "api"
    for gone in (
        "SLACK_WEBHOOK_URL",
        "AWS_SECRET_ACCESS_KEY",
        "INCIDENT_DB",
        "INCIDENT_WEBHOOK_URL",
    ):
        assert gone not in env
    assert "secret" not in (tmp_path / "env.out").read_text()


def test_huge_labels_are_left_out_of_the_environment_not_a_failed_attempt(
    tmp_path: Path,
) -> None:
    # 200 labels of 16 KB: 3.2 MB of environment, over ARG_MAX ("Argument list too long").
    script(tmp_path, "envdump.sh", 'env > "$(dirname "$0")/env.out"\n')
    config = load(recovery_config(tmp_path, ENV_RULES))
    big = {f"big{i:03d}": "x" * 16384 for i in range(200)}
    db = db_for(tmp_path)
    fire(db, config, T0, alert(alertname="Down", service="api", **big))
    result = recover_due(db, config, T0 + 1)
    assert [a.outcome for a in result.actions] == ["succeeded"], result.actions
    env = dumped_env(tmp_path)
    assert env["INCIDENT_LABEL_SERVICE"] == "api"
    assert env["INCIDENT_LABEL_ALERTNAME"] == "Down"
    labels = {k: v for k, v in env.items() if k.startswith("INCIDENT_LABEL_")}
    assert sum(len(k) + len(v) + 2 for k, v in labels.items()) <= 64 * 1024  # the documented budget
    kept = [k for k in labels if k.startswith("INCIDENT_LABEL_BIG")]
    assert 0 < len(kept) < 200
    [note] = [e for e in timeline(db) if "left out of the command's environment" in e["message"]]
    assert f"{200 - len(kept)} label(s) left out" in note["message"]
    assert "big003, big004" in note["message"] and "and 177 more" in note["message"]
