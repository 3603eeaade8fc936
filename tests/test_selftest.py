"""`incident test`: passes on the shipped example, and names each broken part on one line."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from incident_cli.store.connection import open_db
from tests.support.binaries import REPO, run_cli


def lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line]


def test_the_shipped_example_passes_offline_with_no_environment(tmp_path: Path) -> None:
    example = tmp_path / "incident.yaml"
    shutil.copy(REPO / "examples" / "incident.yaml", example)
    scratch = tmp_path / "tmp"  # its own temporary directory: other test runs share /tmp
    scratch.mkdir()
    result = run_cli(
        ["-c", str(example), "test", "--offline"], cwd=tmp_path, env={"TMPDIR": str(scratch)}
    )
    assert result.code == 0, result.stdout + result.stderr
    out = lines(result.stdout)
    assert out[0].startswith("✓ config: ")
    assert "- sources: --offline" in out
    assert any(line.startswith("- channel: slack: disabled") for line in out)
    assert any(line.startswith("✓ pipeline: notify") for line in out) is False  # no channel enabled
    assert any(line.startswith("✓ pipeline: resolve") for line in out)
    assert "✓ pipeline: report: 1 opened, 1 resolved" in out
    assert out[-1] == "all checks passed"
    assert not (tmp_path / "incident.db").exists()  # the real DB is not even created
    assert list(scratch.iterdir()) == []  # its scratch state was removed


def test_it_renders_a_payload_for_every_enabled_channel_and_sends_nothing(tmp_path: Path) -> None:
    config = tmp_path / "incident.yaml"
    config.write_text(
        "sources:\n  p: {type: prometheus, url: 'http://127.0.0.1:9'}\n"
        "channels:\n"
        "  slack: {type: slack, webhook_url: 'http://127.0.0.1:9/hook'}\n"
        "  pd: {type: pagerduty, routing_key: 'rk-123456789', url: 'http://127.0.0.1:9/pd'}\n"
        "  hook: {type: webhook, url: 'http://127.0.0.1:9/x'}\n"
        "  mail: {type: email, host: 127.0.0.1, port: 9, from: a@b.example, to: [c@d.example]}\n"
        "  sp: {type: statuspage, page_id: p1, api_key: k-123456789, api_url: 'http://127.0.0.1:9'}\n"
        "defaults: {notify: [slack]}\n"
    )
    result = run_cli(["-c", str(config), "test", "--offline", "--json"], cwd=tmp_path)
    assert result.code == 0, result.stdout + result.stderr
    checks = result.json()["checks"]
    rendered = {
        c["detail"].split(":")[1].strip().split()[0]
        for c in checks
        if "payload renders" in c["detail"]
    }
    assert rendered == {"slack", "pd", "hook", "mail", "sp"}
    assert "rk-123456789" not in result.stdout and "k-123456789" not in result.stdout


def test_each_broken_part_fails_with_a_clear_line(tmp_path: Path) -> None:
    (tmp_path / "bad_handlers.py").write_text(
        "def weird(incident, alert, rule):\n    return ['not an action']\n"
    )
    config = tmp_path / "incident.yaml"
    config.write_text(
        "sources:\n  p: {type: prometheus, url: 'http://127.0.0.1:9', timeout: 2s}\n"
        "state: {db: '/dev/null/sub/incident.db'}\n"
        "rules:\n"
        "  - name: fix\n"
        "    match: {alertname: Down}\n"
        "    handler: service_down\n"
        "    recovery: {commands: [[no-such-program-xyz, restart]]}\n"
        "  - {name: odd, match: {alertname: Odd}, handler: 'bad_handlers:weird'}\n"
    )
    result = run_cli(
        ["-c", str(config), "test"], cwd=tmp_path, env={"PYTHONPATH": f"{REPO}:{tmp_path}"}
    )
    assert result.code == 1
    failed = [line for line in lines(result.stdout) if line.startswith("✗")]
    assert "✗ program: rule fix recovery: no-such-program-xyz: not found on PATH" in failed
    assert any(line.startswith("✗ state: /dev/null is not writable") for line in failed)
    assert "✗ source: p (prometheus) at http://127.0.0.1:9: connection refused" in failed
    assert any("rule odd: handler returned 'not an action'" in line for line in failed)
    assert lines(result.stdout)[-1] == f"{len(failed)} check(s) failed"


def test_an_invalid_config_is_one_failed_check_and_exit_78(tmp_path: Path) -> None:
    config = tmp_path / "incident.yaml"
    config.write_text("rules: [{name: x, match: {a: b}, handler: nope}]\n")
    result = run_cli(["-c", str(config), "test", "--offline"], cwd=tmp_path)
    assert result.code == 78
    assert lines(result.stdout) == [
        f"✗ config: invalid config: {config}: rules[0].handler: unknown handler 'nope' (built-in: default, service_down, slo_breach, performance_issue, security_incident; or module:function)"
    ]


def test_the_real_db_is_untouched_and_a_newer_schema_is_reported(tmp_path: Path) -> None:
    config = tmp_path / "incident.yaml"
    config.write_text("sources: {}\n")
    db_path = tmp_path / "incident.db"
    db = open_db(db_path)
    db.execute(
        "INSERT INTO _sqlite_migrations (migration_set, name, applied_at) VALUES ('incident', 'm999_future', 'x')"
    )
    db.conn.close()
    digest = hashlib.sha256(db_path.read_bytes()).hexdigest()
    result = run_cli(["-c", str(config), "test", "--offline", "--json"], cwd=tmp_path)
    assert result.code == 1
    failed = [c for c in result.json()["checks"] if c["status"] == "failed"]
    assert [c["check"] for c in failed] == ["db"] and "newer" in failed[0]["detail"]
    assert hashlib.sha256(db_path.read_bytes()).hexdigest() == digest
    json.dumps(result.json())


def test_a_down_source_is_named_by_its_url_without_credentials(tmp_path: Path) -> None:
    from tests.support.binaries import free_port

    port = free_port()
    config = tmp_path / "incident.yaml"
    config.write_text(
        f"sources:\n  prometheus: {{type: prometheus, url: 'http://ops:pw-0123456789@127.0.0.1:{port}'}}\n"
    )
    result = run_cli(["-c", str(config), "test"], cwd=tmp_path)
    assert result.code == 1
    out = lines(result.stdout)
    assert (
        f"✗ source: prometheus (prometheus) at http://***@127.0.0.1:{port}: connection refused"
        in out
    )
    assert "pw-0123456789" not in result.stdout + result.stderr
    assert not [line for line in out if "scratch" in line]
