"""Grouped incidents: the severity is the highest of their alerts (and never drops while open),
their labels are the ones the group shares, their titles tell them apart, `show` lists every
alert, and every view names an incident alike."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlite_utils import Database
from typer.testing import CliRunner

from incident_cli.cli import app
from incident_cli.config.model import Config
from incident_cli.lifecycle.manual import acknowledge
from incident_cli.models import Alert
from incident_cli.reporting.report import build_report
from incident_cli.store.incidents import get_incident, incident_detail, list_incidents
from tests.support import backend
from tests.support.builders import alert
from tests.support.recover import T0, fire, load, recovery_config

pytestmark = pytest.mark.usefixtures("both_backends")

CONFIG = """
channels:
  slack: {type: slack, webhook_url: "https://hooks.example/slack"}
  pd: {type: pagerduty, routing_key: "rk-0123456789", min_severity: critical}
defaults: {notify: [slack, pd]}
rules:
  - {name: host, match: {alertname: "~Host(Raid|Edac).*"}, group_by: [instance]}
  - {name: disk, match: {alertname: DiskFull}, group_by: [alertname, instance]}
  - {name: fixed, match: {alertname: Fixed}, group_by: [alertname], severity: warning}
  - {name: units, match: {alertname: UnitCrashed}, group_by: [alertname, instance, name]}
"""


@pytest.fixture
def config(tmp_path: Path) -> Config:
    path = recovery_config(tmp_path, CONFIG)
    # Three incidents in one poll make a storm (its summary counts alert names too).
    path.write_text(
        path.read_text().replace(
            "{resolve_after: 0s}", "{resolve_after: 0s, storm: {max_new_per_tick: 2}}"
        )
    )
    return load(path)


def graded(alertname: str, severity: str, started: float = T0 - 60, **labels: str) -> Alert:
    """A firing alert from `prometheus` whose summary names it and its severity."""
    summary = f"{alertname} ({severity})"
    return alert(alertname, severity=severity, summary=summary, starts_at=started, **labels)


def firing_sent(db: Database, incident_id: int) -> list[str]:
    return [
        r["channel"]
        for r in db.query(
            "SELECT channel FROM notifications WHERE incident_id = ? AND event = 'firing'"
            " ORDER BY id",
            [incident_id],
        )
    ]


def events(db: Database, incident_id: int, kind: str) -> list[dict[str, Any]]:
    return [
        {"message": r["message"], "data": json.loads(r["data"]) if r["data"] else None}
        for r in db.query(
            "SELECT * FROM timeline WHERE incident_id = ? AND kind = ? ORDER BY id",
            [incident_id, kind],
        )
    ]


WARN = graded("DiskFull", "warning", started=T0 - 120, instance="db1", mountpoint="/var")
CRIT = graded("DiskFull", "critical", started=T0 - 60, instance="db1", mountpoint="/")


def test_a_grouped_incident_takes_the_highest_severity_not_its_first_alerts(
    db: Database, config: Config
) -> None:
    # The field case: the warning alert began first, and the incident read "warning".
    [incident_id] = fire(db, config, T0, WARN, CRIT).opened
    incident = get_incident(db, incident_id)
    assert incident is not None
    assert incident.severity == "critical"
    assert firing_sent(db, incident_id) == ["slack", "pd"]  # PagerDuty pages
    assert (
        json.loads(
            db.execute("SELECT message FROM notifications WHERE channel = 'slack'").fetchone()[0]
        )["incident"]["severity"]
        == "critical"
    )


def test_a_higher_alert_joining_raises_the_severity_and_pages_who_now_takes_it(
    db: Database, config: Config
) -> None:
    [incident_id] = fire(db, config, T0, WARN).opened
    assert get_incident(db, incident_id).severity == "warning"  # type: ignore[union-attr]
    assert firing_sent(db, incident_id) == ["slack"]

    fire(db, config, T0 + 60, WARN, CRIT)
    assert get_incident(db, incident_id).severity == "critical"  # type: ignore[union-attr]
    [raised] = events(db, incident_id, "severity_raised")
    assert raised["data"] == {"from": "warning", "to": "critical"}
    assert "DiskFull" in raised["message"]
    # PagerDuty gets the firing message in the same poll; Slack, already told, nothing new.
    assert firing_sent(db, incident_id) == ["slack", "pd"]

    # It never drops while the incident is open, and the same alerts raise nothing again.
    fire(db, config, T0 + 120, WARN)
    fire(db, config, T0 + 180, WARN, CRIT)
    assert get_incident(db, incident_id).severity == "critical"  # type: ignore[union-attr]
    assert len(events(db, incident_id, "severity_raised")) == 1
    assert firing_sent(db, incident_id) == ["slack", "pd"]


def test_a_reopen_with_a_higher_alert_raises_the_severity_before_it_notifies(
    db: Database, config: Config
) -> None:
    [incident_id] = fire(db, config, T0, WARN).opened
    fire(db, config, T0 + 60)
    fire(db, config, T0 + 120)
    assert get_incident(db, incident_id).status == "resolved"  # type: ignore[union-attr]
    assert fire(db, config, T0 + 180, CRIT).reopened == [incident_id]
    incident = get_incident(db, incident_id)
    assert incident is not None and incident.severity == "critical"
    kinds = [r["kind"] for r in db.query("SELECT kind FROM timeline ORDER BY id")]
    assert kinds.index("severity_raised") == kinds.index("reopened") + 1
    assert firing_sent(db, incident_id) == ["slack", "slack", "pd"]


def test_the_rules_fixed_severity_still_wins(db: Database, config: Config) -> None:
    [incident_id] = fire(db, config, T0, graded("Fixed", "critical", instance="a")).opened
    fire(
        db,
        config,
        T0 + 60,
        graded("Fixed", "critical", instance="a"),
        graded("Fixed", "page", instance="b"),
    )
    assert get_incident(db, incident_id).severity == "warning"  # type: ignore[union-attr]
    assert events(db, incident_id, "severity_raised") == []
    assert firing_sent(db, incident_id) == ["slack"]


def test_an_acknowledged_incident_records_the_rise_but_pages_nobody_new(
    db: Database, config: Config
) -> None:
    [incident_id] = fire(db, config, T0, WARN).opened
    acknowledge(db, config, incident_id, "alice", None, T0 + 30)
    fire(db, config, T0 + 60, WARN, CRIT)
    assert get_incident(db, incident_id).severity == "critical"  # type: ignore[union-attr]
    assert len(events(db, incident_id, "severity_raised")) == 1
    assert firing_sent(db, incident_id) == ["slack"]


def test_severity_labels_other_rule_sets_use_are_ranked_too(db: Database, config: Config) -> None:
    [incident_id] = fire(
        db,
        config,
        T0,
        graded("HostEdacErrors", "warning", started=T0 - 300, instance="h1"),
        graded("HostRaidDegraded", "PAGE", instance="h1"),
    ).opened
    assert get_incident(db, incident_id).severity == "critical"  # type: ignore[union-attr]


def test_labels_are_the_shared_ones_and_annotations_those_of_the_opening_alert(
    db: Database, config: Config
) -> None:
    edac = graded("HostEdacErrors", "warning", started=T0 - 300, instance="h1", controller="0")
    raid = graded("HostRaidDegraded", "critical", instance="h1", device="md0")
    [incident_id] = fire(db, config, T0, raid, edac).opened
    incident = get_incident(db, incident_id)
    assert incident is not None
    assert incident.labels == {"instance": "h1"}
    assert incident.annotations == {"summary": "HostEdacErrors (warning)"}  # began first
    assert incident.title == "host: h1"  # no shared alertname: the rule names it
    detail = incident_detail(db, incident)
    assert [(a["alertname"], a["severity"], a["state"], a["labels"]) for a in detail["alerts"]] == [
        ("HostRaidDegraded", "critical", "firing", dict(raid.labels)),
        ("HostEdacErrors", "warning", "firing", dict(edac.labels)),
    ]


def test_titles_name_the_group_by_values_that_tell_incidents_apart(
    tmp_path: Path, db: Database, config: Config
) -> None:
    # The field case: nine systemd units on one host, nine incidents all titled alike.
    units = [
        graded("UnitCrashed", "warning", instance="127.0.0.1:35005", name=f"unit{i}.service")
        for i in range(3)
    ]
    opened = fire(db, config, T0, *units).opened
    titles = [get_incident(db, i).title for i in opened]  # type: ignore[union-attr]
    assert titles == [
        f"UnitCrashed: instance=127.0.0.1:35005, name=unit{i}.service" for i in range(3)
    ]
    # A rule that does not group: every label but alertname and severity tells it apart.
    ungrouped = [
        graded("Other", "warning", instance="127.0.0.1:35005", job="node", name=f"u{i}")
        for i in range(2)
    ]
    opened = fire(db, config, T0 + 60, *units, *ungrouped).opened
    assert [get_incident(db, i).title for i in opened] == [  # type: ignore[union-attr]
        f"Other: instance=127.0.0.1:35005, job=node, name=u{i}" for i in range(2)
    ]
    # One value is shown bare.
    [disk] = fire(db, config, T0 + 120, *units, *ungrouped, WARN).opened
    assert get_incident(db, disk).title == "DiskFull: db1"  # type: ignore[union-attr]


def test_every_view_names_an_incident_alike(tmp_path: Path, db: Database, config: Config) -> None:
    fire(
        db,
        config,
        T0,
        graded("HostEdacErrors", "warning", started=T0 - 300, instance="h1"),
        graded("HostRaidDegraded", "critical", instance="h1"),
        graded("HostRaidDegraded", "critical", instance="h2"),
        WARN,
    )
    names = sorted(i.title.split(":")[0] for i in list_incidents(db, None, None))
    assert names == ["DiskFull", "host", "host"]
    report = build_report(db, T0 + 60, 24)
    assert sorted(report.top_alerts) == [("DiskFull", 1), ("host", 2)]
    # More new incidents than storm.max_new_per_tick: the storm summary counts the same names.
    storm = json.loads(
        db.execute("SELECT message FROM notifications WHERE event = 'storm' LIMIT 1").fetchone()[0]
    )
    assert sorted((a["alertname"], a["incidents"]) for a in storm["top_alerts"]) == [
        ("DiskFull", 1),
        ("host", 2),
    ]


def test_show_lists_every_alert_with_its_own_labels_severity_and_state(
    tmp_path: Path, db: Database, config: Config
) -> None:
    fire(db, config, T0, WARN, CRIT)
    fire(db, config, T0 + 60, CRIT)  # the warning clears
    args = ["-c", str(tmp_path / "incident.yaml"), "--db", backend.locate(tmp_path / "state.db")]
    shown = CliRunner().invoke(app, [*args, "show", "1", "--json"], catch_exceptions=False)
    assert shown.exit_code == 0, shown.output
    alerts = json.loads(shown.stdout)["alerts"]
    assert [
        (a["alertname"], a["severity"], a["state"], a["labels"]["mountpoint"]) for a in alerts
    ] == [
        ("DiskFull", "warning", "cleared", "/var"),
        ("DiskFull", "critical", "firing", "/"),
    ]
    human = CliRunner().invoke(app, [*args, "show", "1"], catch_exceptions=False)
    assert human.exit_code == 0, human.output
    section = human.stdout.split("Alerts (2)")[1].split("Timeline")[0]
    lines = [line.split() for line in section.strip().splitlines()]
    assert lines[0][:4] == ["cleared", "warning", "prometheus", "DiskFull"]
    assert lines[1] == ["mountpoint=/var"]
    assert lines[2][:4] == ["firing", "critical", "prometheus", "DiskFull"]
    assert lines[3] == ["mountpoint=/"]


def test_the_review_draft_names_the_grouped_alerts_and_the_rise(
    tmp_path: Path, db: Database, config: Config
) -> None:
    fire(db, config, T0, graded("HostEdacErrors", "warning", instance="h1"))
    fire(
        db,
        config,
        T0 + 60,
        graded("HostEdacErrors", "warning", instance="h1"),
        graded("HostRaidDegraded", "critical", instance="h1", device="md0"),
    )
    args = ["-c", str(tmp_path / "incident.yaml"), "--db", backend.locate(tmp_path / "state.db")]
    review = CliRunner().invoke(app, [*args, "report", "--incident", "1"], catch_exceptions=False)
    assert review.exit_code == 0, review.output
    assert "# Post-incident review: #1 host: h1" in review.stdout
    assert "| Severity | critical |" in review.stdout
    assert "| Alerts | 2: HostEdacErrors x1, HostRaidDegraded x1 |" in review.stdout
    [raised] = [line for line in review.stdout.splitlines() if "| severity\\_raised |" in line]
    assert "(from warning, to critical)" in raised


def test_the_memoised_severity_and_title_give_the_same_answers_for_every_input() -> None:
    """alert_severity and title_for keep answers by input: one value must never leak into
    another's answer, and the caches stay bounded past their size."""
    from incident_cli.config.model import DEFAULT_RULE
    from incident_cli.lifecycle.routing import title_for
    from incident_cli.models import _SEVERITY_OF_LABEL, alert_severity

    cfg_rule = replace(DEFAULT_RULE, group_by=None)
    for i in range(1500):
        assert alert_severity({"severity": f"x{i}"}, "warning") == "warning"
        assert alert_severity({"severity": f"x{i}"}, "error") == "error"
    assert len(_SEVERITY_OF_LABEL) <= 1024
    assert alert_severity({"severity": " PAGE "}, "info") == "critical"
    assert alert_severity({"severity": "Warn"}, "info") == "warning"
    assert alert_severity({}, "info") == "info"
    a = title_for(cfg_rule, {"alertname": "A", "job": "j", "zone": "z", "instance": "i"})
    b = title_for(cfg_rule, {"alertname": "A", "zone": "z", "instance": "i", "job": "j"})
    assert a == b == "A: instance=i, job=j, zone=z"
    assert title_for(cfg_rule, {"alertname": "A", "zone": "z"}) == "A: z"
