"""A real Prometheus behind basic auth (`--web.config.file`, `basic_auth_users`) whose password
is outside Latin-1: `poll` reads its alerts and a PromQL diagnostic queries it, both through the
one HTTP client and both sending the credentials as UTF-8 (RFC 7617)."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from tests.support.binaries import basic_auth_header, run_cli, start_prometheus, wait_until

pytestmark = pytest.mark.integration

WEB_CONFIG = Path(__file__).parent / "fixtures" / "prometheus-web" / "web.yml"
USER, PASSWORD = "ops", "pässwörd€"

RULES = """
groups:
- name: probe
  interval: 1s
  rules:
  - alert: AuthProbe
    expr: vector(1)
    labels: {severity: warning}
    annotations: {summary: "always firing"}
"""


def firing(url: str) -> bool:
    request = urllib.request.Request(
        f"{url}/api/v1/alerts", headers=basic_auth_header(USER, PASSWORD)
    )
    with urllib.request.urlopen(request, timeout=2) as response:
        alerts = json.load(response)["data"]["alerts"]
    return any(a["state"] == "firing" for a in alerts)


def test_poll_and_a_diagnostic_query_reach_a_prometheus_with_a_non_latin1_password(
    tmp_path: Path,
) -> None:
    prom = start_prometheus(
        tmp_path / "prom", RULES, [], web_config=WEB_CONFIG, ready_auth=(USER, PASSWORD)
    )
    try:
        wait_until(lambda: firing(prom.url), timeout=30)
        (tmp_path / "incident.yaml").write_text(
            f"""
sources:
  prom:
    type: prometheus
    url: "{prom.url}"
    basic_auth: {{username: {USER}, password: "{PASSWORD}"}}
rules:
  - {{name: probe, match: {{alertname: AuthProbe}}, handler: performance_issue,
      diagnostics: {{queries: ["vector(1)"]}}}}
"""
        )
        poll = run_cli(["poll"], cwd=tmp_path)
        assert poll.code == 0, poll.stderr
        shown = run_cli(["show", "1", "--json"], cwd=tmp_path)
        assert shown.code == 0, shown.stderr
        assert json.loads(shown.stdout)["title"], shown.stdout

        recover = run_cli(["recover"], cwd=tmp_path)
        assert recover.code == 0, recover.stderr
        incident = json.loads(run_cli(["show", "1", "--json"], cwd=tmp_path).stdout)
    finally:
        prom.stop()
    [event] = [e for e in incident["timeline"] if e["kind"] == "action_succeeded"]
    [query] = event["data"]["queries"]
    assert "error" not in query, query
    assert query["result"]["total"] == 1, query
    assert PASSWORD not in json.dumps(incident)
