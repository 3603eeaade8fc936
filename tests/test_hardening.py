"""Smaller hardening: report file modes, public Statuspage names, links, incident keys, config
errors that would echo credentials or recurse without end."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
import responses

from incident_cli.config.load import load_config
from incident_cli.config.model import DEFAULT_RULE
from incident_cli.errors import ConfigError
from incident_cli.intake.sources import fingerprint
from incident_cli.lifecycle.routing import incident_key
from incident_cli.models import Alert
from tests.support.binaries import run_cli
from tests.support.notify import T0, deliver, make_setup

# --------------------------------------------------------------------------- report --output


def report(tmp_path: Path, output: Path, umask: int) -> None:
    (tmp_path / "incident.yaml").write_text("sources: {}\n")
    old = os.umask(umask)
    try:  # the child inherits the umask, as it would from cron
        result = run_cli(
            ["--config", "incident.yaml", "--db", "state.db", "report", "--output", str(output)],
            cwd=tmp_path,
        )
    finally:
        os.umask(old)
    assert result.code == 0, result.stderr


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_report_output_is_created_with_what_the_umask_allows(tmp_path: Path) -> None:
    report(tmp_path, tmp_path / "r.txt", 0o077)
    assert mode(tmp_path / "r.txt") == 0o600
    report(tmp_path, tmp_path / "s.txt", 0o027)
    assert mode(tmp_path / "s.txt") == 0o640


def test_report_output_keeps_an_existing_files_mode(tmp_path: Path) -> None:
    out = tmp_path / "r.txt"
    out.write_text("old\n")
    out.chmod(0o600)
    report(tmp_path, out, 0o022)
    assert mode(out) == 0o600
    assert out.read_text() != "old\n"


# --------------------------------------------------------------------------- channels

SP_API = "https://api.statuspage.io/v1"


def _statuspage(tmp_path: Path, extra: str = "") -> Any:
    spec = (
        "{type: statuspage, page_id: page1, api_key: SPKEY-0123456789,"
        f" components: {{backend: cmp-backend}}{extra}}}"
    )
    return make_setup(tmp_path, {"sp": spec}, ["sp"])


def hostile(name: str = "BackendServiceDown", runbook: str | None = None, **labels: str) -> Alert:
    all_labels = {"alertname": name, **labels}
    return Alert(
        source="prometheus",
        fingerprint=fingerprint(all_labels),
        labels=all_labels,
        annotations={"runbook_url": runbook} if runbook else {},
        state="firing",
        starts_at=T0 - 60,
    )


def _sent_name() -> str:
    name: str = json.loads(responses.calls[0].request.body)["incident"]["name"]
    return name


@responses.activate
def test_statuspage_names_the_public_incident_without_label_text(tmp_path: Path) -> None:
    setup = _statuspage(tmp_path)
    setup.fire([hostile(service="backend", instance="db-7.internal.corp:5432 customer=ACME")])
    setup.fire([hostile(name="Leak: password=hunter2", service="other")], T0 + 1)
    responses.post(f"{SP_API}/pages/page1/incidents", status=201, json={"id": "sp-1"})
    deliver(setup)
    names = [json.loads(c.request.body)["incident"]["name"] for c in responses.calls]
    # The mapped component's name; otherwise the rule's (here the default rule's).
    assert names == ["backend", "default"]


@responses.activate
def test_statuspage_name_template_is_configurable(tmp_path: Path) -> None:
    setup = _statuspage(tmp_path, ', name_template: "{component} is degraded ({rule})"')
    setup.fire([hostile(service="backend")])
    responses.post(f"{SP_API}/pages/page1/incidents", status=201, json={"id": "sp-1"})
    deliver(setup)
    assert _sent_name() == "backend is degraded (backend-down)"


def test_statuspage_name_template_with_an_unknown_field_is_a_config_error(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError, match=r"name_template: unknown field \{labels\}"):
        _statuspage(tmp_path, ', name_template: "{labels}"')


SLACK = "https://hooks.slack.com/services/T000/B000/XXXXSECRET"
PD = "https://events.pagerduty.com/v2/enqueue"


@responses.activate
@pytest.mark.parametrize(
    "runbook",
    ["javascript:alert(document.cookie)", "data:text/html,<script>", "file:///etc/passwd"],
)
def test_only_http_links_are_forwarded_to_slack_pagerduty_and_webhooks(
    tmp_path: Path, runbook: str
) -> None:
    setup = make_setup(
        tmp_path,
        {
            "slack": f'{{type: slack, webhook_url: "{SLACK}"}}',
            "pd": "{type: pagerduty, routing_key: PDKEY-0123456789}",
            "hook": '{type: webhook, url: "https://hooks.example.test/in"}',
        },
    )
    setup.fire([hostile(name="Other", runbook=runbook)])
    for url in (SLACK, PD, "https://hooks.example.test/in"):
        responses.post(url, status=202, body="ok")
    deliver(setup)
    assert len(responses.calls) == 3
    # Channels send on threads of their own: the calls come in any order.
    sent = {c.request.url: c.request.body.decode() for c in responses.calls}
    slack, pagerduty, webhook = sent[SLACK], sent[PD], sent["https://hooks.example.test/in"]
    for body in (slack, pagerduty):
        assert runbook.split(":")[0] + ":" not in body
        assert "https://grafana.example.com/d/abc" in body  # an http(s) link still goes
    # A webhook gets the incident as data (its annotations included), but no link to follow.
    assert json.loads(webhook)["details"]["runbook"] is None


# --------------------------------------------------------------------------- incident keys


def test_label_names_are_escaped_in_incident_keys() -> None:
    assert incident_key(DEFAULT_RULE, {"p": "1", "q": "2"}) != incident_key(
        DEFAULT_RULE, {"p=1,q": "2"}
    )


def test_ordinary_label_names_keep_the_keys_they_had() -> None:
    # Keys of open incidents stored before names were escaped must not change.
    labels = {"alertname": "Down", "instance": "db1,mount=/", "job": "node"}
    assert incident_key(DEFAULT_RULE, labels) == (
        r"default:alertname=Down,instance=db1\,mount\=/,job=node"
    )


# --------------------------------------------------------------------------- config errors


def test_a_config_error_never_echoes_a_urls_credentials(tmp_path: Path) -> None:
    (tmp_path / "incident.yaml").write_text(
        "sources:\n  p: {type: prometheus, url: 'ftp://admin:S3cr3tPW@prom.example:9090'}\n"
    )
    result = run_cli(["--config", "incident.yaml", "--db", "state.db", "poll"], cwd=tmp_path)
    assert result.code == 78
    assert "S3cr3tPW" not in result.stderr + result.stdout
    assert "ftp://***@prom.example:9090" in result.stderr


@pytest.mark.parametrize(
    ("url", "shown"),
    [("admin:S3cr3tPW@prom.example", "***@prom.example"), ("//admin:S3cr3tPW@h/", "//***@h")],
)
def test_a_config_error_masks_credentials_of_a_url_without_a_scheme(
    tmp_path: Path, url: str, shown: str
) -> None:
    (tmp_path / "incident.yaml").write_text(f"sources:\n  p: {{type: prometheus, url: '{url}'}}\n")
    result = run_cli(["--config", "incident.yaml", "--db", "state.db", "poll"], cwd=tmp_path)
    assert result.code == 78, result.stderr
    assert "S3cr3tPW" not in result.stderr + result.stdout
    assert shown in result.stderr


def test_100k_deep_yaml_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "incident.yaml").write_text("a: " + "[" * 100_000 + "]" * 100_000 + "\n")
    result = run_cli(["--config", "incident.yaml", "--db", "state.db", "poll"], cwd=tmp_path)
    assert result.code == 78, result.stderr
    assert "nested too deeply" in result.stderr
    assert result.stderr.count("\n") == 1


def test_deep_yaml_is_refused_by_the_loader_too(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("a: " + "{b: " * 50_000 + "1" + "}" * 50_000 + "\n")
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_config(path, {}, must_exist=True)
