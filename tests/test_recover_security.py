"""Security incidents: escalate at once, block the source IP only when allowed and safe."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlite_utils import Database

from incident_cli.config.model import Config
from incident_cli.lifecycle.manual import acknowledge
from incident_cli.recovery.tick import recover_due
from incident_cli.store.incidents import get_incident
from tests.support.recover import (
    T0,
    actions,
    alert,
    db_for,
    fire,
    kinds,
    load,
    recovery_config,
    script,
    timeline,
)

pytestmark = pytest.mark.usefixtures("both_backends")


def security_config(tmp_path: Path, env: dict[str, str] | None = None, extra: str = "") -> Config:
    script(tmp_path, "ban.sh", 'echo "$@" >> bans.log\n')
    path = recovery_config(
        tmp_path,
        f"""
        channels:
          pager: {{type: webhook, url: "http://127.0.0.1:9/pager"}}
        defaults: {{notify: []}}
        escalation: {{channels: [pager]}}
        rules:
          - name: auth-spike
            match: {{alertname: AuthenticationFailureSpike}}
            handler: security_incident
            security: {{ip_label: source_ip, block_command: [./ban.sh, sshd, "{{ip}}"]}}
        {extra}
        """,
    )
    return load(path, {"AUTO_BLOCK_SUSPICIOUS_IPS": "true", **(env or {})})


def spike(ip: str, **labels: str) -> object:
    return alert(alertname="AuthenticationFailureSpike", source_ip=ip, **labels)


def bans(tmp_path: Path) -> list[str]:
    log = tmp_path / "bans.log"
    return log.read_text().splitlines() if log.exists() else []


def block_action(db: Database, incident_id: int = 1) -> dict[str, object]:
    return next(a for a in actions(db, incident_id) if a["kind"] == "block_ip")


def test_a_security_incident_escalates_at_once_and_only_once(tmp_path: Path) -> None:
    config = security_config(tmp_path)
    db = db_for(tmp_path)
    fire(db, config, T0, spike("203.0.113.9"))
    result = recover_due(db, config, T0 + 1)
    assert result.escalated == [1]
    recover_due(db, config, T0 + 2)
    assert kinds(db).count("escalated") == 1
    queued = list(db.query("SELECT channel, event FROM notifications WHERE event = 'escalation'"))
    assert queued == [{"channel": "pager", "event": "escalation"}]
    incident = get_incident(db, 1)
    assert incident is not None and incident.escalated_at is not None


def test_an_acknowledged_security_incident_is_not_escalated(tmp_path: Path) -> None:
    config = security_config(tmp_path)
    db = db_for(tmp_path)
    fire(db, config, T0, spike("203.0.113.9"))
    acknowledge(db, config, 1, "alice", None, T0 + 1)
    result = recover_due(db, config, T0 + 2)
    assert result.escalated == []
    assert "escalated" not in kinds(db)


def test_it_blocks_the_source_ip_with_the_block_command(tmp_path: Path) -> None:
    config = security_config(tmp_path)
    db = db_for(tmp_path)
    fire(db, config, T0, spike("203.0.113.9"))
    recover_due(db, config, T0 + 1)
    assert bans(tmp_path) == ["sshd 203.0.113.9"]
    action = block_action(db)
    assert action["status"] == "succeeded"
    assert action["command"] == ["./ban.sh", "sshd", "203.0.113.9"]


def test_an_ipv6_address_is_blocked_in_its_canonical_form(tmp_path: Path) -> None:
    config = security_config(tmp_path)
    db = db_for(tmp_path)
    fire(db, config, T0, spike("2001:DB8:0:0::7"))
    recover_due(db, config, T0 + 1)
    assert bans(tmp_path) == ["sshd 2001:db8::7"]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("10.1.2.3", "is in never_block (10.0.0.0/8)"),
        ("127.0.0.1", "is in never_block (127.0.0.0/8)"),
        ("::1", "is in never_block (::1/128)"),
        ("::ffff:192.168.1.5", "is in never_block (192.168.0.0/16)"),
        ("1.2.3.4; rm -rf /", "is not an IP address"),
        ("--help", "is not an IP address"),
        ("$(id)", "is not an IP address"),
        ("203.0.113.9\n10.0.0.1", "is not an IP address"),
        ("x" * (1 << 20), "is not an IP address"),
        ("0.0.0.0", "not a single host address"),
        ("224.0.0.1", "not a single host address"),
    ],
)
def test_an_unsafe_or_protected_ip_is_refused(tmp_path: Path, value: str, reason: str) -> None:
    config = security_config(tmp_path)
    db = db_for(tmp_path)
    fire(db, config, T0, spike(value))
    result = recover_due(db, config, T0 + 1)
    assert bans(tmp_path) == []
    action = block_action(db)
    assert action["status"] == "refused"
    assert reason in str(action["error"])
    assert result.problems == 1
    assert any(e["kind"] == "action_refused" and reason in e["message"] for e in timeline(db))


def test_a_missing_ip_label_is_refused(tmp_path: Path) -> None:
    config = security_config(tmp_path)
    db = db_for(tmp_path)
    fire(db, config, T0, alert(alertname="AuthenticationFailureSpike"))
    recover_due(db, config, T0 + 1)
    assert "label 'source_ip' is not set" in str(block_action(db)["error"])


def test_never_block_comes_from_the_config(tmp_path: Path) -> None:
    config = security_config(tmp_path, extra="security: {never_block: [203.0.113.0/24]}")
    db = db_for(tmp_path)
    fire(db, config, T0, spike("203.0.113.9"), spike("10.0.0.1", n="2"))
    recover_due(db, config, T0 + 1)
    assert block_action(db, 1)["status"] == "refused"
    assert bans(tmp_path) == ["sshd 10.0.0.1"]  # the defaults no longer apply


def test_at_most_max_blocks_per_tick_run_and_the_rest_wait(tmp_path: Path) -> None:
    config = security_config(tmp_path, extra="security: {max_blocks_per_tick: 2}")
    db = db_for(tmp_path)
    ips = ["203.0.113.1", "203.0.113.2", "203.0.113.3"]
    fire(db, config, T0, *[spike(ip) for ip in ips])
    result = recover_due(db, config, T0 + 1)
    assert len(bans(tmp_path)) == 2
    assert [a.outcome for a in result.actions if a.kind == "block_ip"].count("deferred") == 1
    recover_due(db, config, T0 + 60)
    assert sorted(b.split()[1] for b in bans(tmp_path)) == ips


def test_an_ip_blocked_recently_is_not_blocked_again(tmp_path: Path) -> None:
    config = security_config(tmp_path)
    db = db_for(tmp_path)
    fire(db, config, T0, spike("203.0.113.9", path="/login"))
    recover_due(db, config, T0 + 1)
    fire(db, config, T0 + 10, spike("203.0.113.9", path="/login"), spike("203.0.113.9", path="/x"))
    recover_due(db, config, T0 + 11)
    assert bans(tmp_path) == ["sshd 203.0.113.9"]
    assert block_action(db, 2)["status"] == "skipped"


def test_blocking_switched_off_at_run_time_blocks_nothing(tmp_path: Path) -> None:
    config = security_config(tmp_path)
    db = db_for(tmp_path)
    fire(db, config, T0, spike("203.0.113.9"))
    off = security_config(tmp_path, {"AUTO_BLOCK_SUSPICIOUS_IPS": "false"})
    recover_due(db, off, T0 + 1)
    assert bans(tmp_path) == []
    assert block_action(db)["status"] == "skipped"
