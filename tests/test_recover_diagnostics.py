"""Diagnostics: the rule's commands (same safety as fixes) and PromQL instant queries, with
bounded results attached to the timeline."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import responses
from responses import matchers

from incident_cli.config.model import Config
from incident_cli.recovery.diagnostics import MAX_QUERY_RESULT_CHARS
from incident_cli.recovery.tick import recover_due
from tests.support.binaries import serve_get
from tests.support.recover import T0, actions, alert, db_for, fire, load, script, timeline

pytestmark = pytest.mark.usefixtures("both_backends")

PROM = "http://prom.test:9090"


def diag_config(tmp_path: Path, diagnostics: str, env: dict[str, str] | None = None) -> Config:
    path = tmp_path / "incident.yaml"
    path.write_text(
        f"""
sources:
  alertmanager: {{type: alertmanager, url: "http://127.0.0.1:9"}}
  prom: {{type: prometheus, url: "{PROM}", bearer_token: "${{PROM_TOKEN}}", timeout: 5s}}
rules:
  - name: latency
    match: {{alertname: "~LatencySLOBreach_.*"}}
    handler: performance_issue
    diagnostics: {diagnostics}
"""
    )
    return load(path, {"PROM_TOKEN": "tok-s3cr3t-value", **(env or {})})


@pytest.fixture
def prom() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def vector(n: int) -> dict[str, Any]:
    return {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [
                {"metric": {"job": f"job-{i}", "pad": "x" * 100}, "value": [T0, str(i)]}
                for i in range(n)
            ],
        },
    }


def diagnostics_event(tmp_path: Path) -> dict[str, Any]:
    db = db_for(tmp_path)
    event: dict[str, Any] = next(
        e for e in timeline(db) if e["kind"] in ("action_succeeded", "action_failed")
    )
    return event


def test_it_runs_the_commands_and_queries_and_attaches_the_results(
    tmp_path: Path, prom: responses.RequestsMock
) -> None:
    call = prom.get(
        f"{PROM}/api/v1/query",
        json=vector(2),
        match=[
            matchers.query_param_matcher({"query": "topk(5, up)"}),
            matchers.header_matcher({"Authorization": "Bearer tok-s3cr3t-value"}),
        ],
    )
    script(tmp_path, "probe.sh", 'echo "probing $1"\n')
    config = diag_config(
        tmp_path, '{commands: [["./probe.sh", "{job}"]], queries: ["topk(5, up)"]}'
    )
    db = db_for(tmp_path)
    fire(db, config, T0, alert(alertname="LatencySLOBreach_api", job="api"))
    result = recover_due(db, config, T0 + 1)
    assert [a.outcome for a in result.actions] == ["succeeded"]
    assert call.call_count == 1
    [action] = actions(db)
    assert action["status"] == "succeeded"
    assert "probing api" in action["output"]
    event = diagnostics_event(tmp_path)
    assert event["kind"] == "action_succeeded"
    [command] = event["data"]["commands"]
    assert command["argv"] == ["./probe.sh", "api"] and command["exit_code"] == 0
    [query] = event["data"]["queries"]
    assert query["query"] == "topk(5, up)"
    assert query["result"]["total"] == 2
    assert [s["metric"]["job"] for s in query["result"]["series"]] == ["job-0", "job-1"]


def test_a_large_query_result_is_bounded(tmp_path: Path, prom: responses.RequestsMock) -> None:
    prom.get(f"{PROM}/api/v1/query", json=vector(5000))
    config = diag_config(tmp_path, '{queries: ["up"]}')
    db = db_for(tmp_path)
    fire(db, config, T0, alert(alertname="LatencySLOBreach_api"))
    recover_due(db, config, T0 + 1)
    [query] = diagnostics_event(tmp_path)["data"]["queries"]
    assert query["result"]["total"] == 5000
    assert 0 < len(query["result"]["series"]) <= 20
    assert len(json.dumps(query["result"])) <= MAX_QUERY_RESULT_CHARS


def test_an_unreachable_prometheus_fails_the_diagnostics_clearly(tmp_path: Path) -> None:
    path = tmp_path / "incident.yaml"
    path.write_text(
        """
sources:
  prom: {type: prometheus, url: "http://127.0.0.1:9", timeout: 2s}
rules:
  - {name: latency, match: {alertname: Slow}, handler: performance_issue}
"""
    )
    config = load(path)
    db = db_for(tmp_path)
    fire(db, config, T0, alert(alertname="Slow"))
    recover_due(db, config, T0 + 1)
    [action] = actions(db)
    assert action["status"] == "failed"
    assert "query on prom: connection refused" in action["error"]
    assert "127.0.0.1:9" not in action["error"]  # URLs may carry credentials


def test_a_query_prometheus_rejects_is_reported(
    tmp_path: Path, prom: responses.RequestsMock
) -> None:
    prom.get(f"{PROM}/api/v1/query", status=400, json={"status": "error", "error": "parse error"})
    config = diag_config(tmp_path, '{queries: ["up{"]}')
    db = db_for(tmp_path)
    fire(db, config, T0, alert(alertname="LatencySLOBreach_api"))
    recover_due(db, config, T0 + 1)
    [action] = actions(db)
    assert action["status"] == "failed" and "HTTP 400" in action["error"]


def test_secrets_never_reach_the_output_or_the_timeline(
    tmp_path: Path, prom: responses.RequestsMock
) -> None:
    prom.get(f"{PROM}/api/v1/query", json=vector(1))
    # The command no longer inherits PROM_TOKEN (minimal environment): it prints it itself.
    script(tmp_path, "leak.sh", 'echo "token is tok-s3cr3t-value"\n')
    config = diag_config(tmp_path, '{commands: [["./leak.sh"]], queries: ["up"]}')
    db = db_for(tmp_path)
    fire(db, config, T0, alert(alertname="LatencySLOBreach_api"))
    recover_due(db, config, T0 + 1)
    [action] = actions(db)
    assert "token is ***" in action["output"]
    everything = json.dumps([actions(db), timeline(db)])
    assert "tok-s3cr3t-value" not in everything


def test_a_diagnostic_command_missing_from_path_fails_but_queries_still_run(
    tmp_path: Path, prom: responses.RequestsMock
) -> None:
    call = prom.get(f"{PROM}/api/v1/query", json=vector(1))
    config = diag_config(tmp_path, '{commands: [["no-such-diag-tool"]], queries: ["up"]}')
    db = db_for(tmp_path)
    fire(db, config, T0, alert(alertname="LatencySLOBreach_api"))
    result = recover_due(db, config, T0 + 1)
    assert call.call_count == 1
    [action] = actions(db)
    assert action["status"] == "failed"
    assert "no-such-diag-tool: was not found on PATH" in action["error"]
    assert result.problems == 1


def test_diagnostics_run_even_when_recovery_is_disabled(
    tmp_path: Path, prom: responses.RequestsMock
) -> None:
    prom.get(f"{PROM}/api/v1/query", json=vector(1))
    config = diag_config(tmp_path, '{queries: ["up"]}', {"AUTO_RECOVERY_ENABLED": "false"})
    db = db_for(tmp_path)
    fire(db, config, T0, alert(alertname="LatencySLOBreach_api"))
    recover_due(db, config, T0 + 1)
    assert actions(db)[0]["status"] == "succeeded"


def test_an_unsafe_label_in_a_diagnostic_command_refuses_it(tmp_path: Path) -> None:
    script(tmp_path, "probe.sh", "touch ran\n")
    config = diag_config(tmp_path, '{commands: [["./probe.sh", "{job}"]]}')
    db = db_for(tmp_path)
    fire(db, config, T0, alert(alertname="LatencySLOBreach_api", job="$(id)"))
    recover_due(db, config, T0 + 1)
    assert actions(db)[0]["status"] == "refused"
    assert not (tmp_path / "ran").exists()


def test_a_query_through_a_source_with_a_non_latin1_password_sends_it_as_utf8(
    tmp_path: Path,
) -> None:
    import base64

    seen: list[str] = []
    expected = "Basic " + base64.b64encode("ops:pässwörd€".encode()).decode()

    def answer(headers: dict[str, str]) -> tuple[int, bytes]:
        seen.append(headers.get("Authorization", ""))
        if seen[-1] != expected:
            return 401, b'{"status": "error"}'
        return 200, json.dumps(vector(1)).encode()

    with serve_get(answer) as url:
        path = tmp_path / "incident.yaml"
        path.write_text(
            f"""
sources:
  prom:
    type: prometheus
    url: "{url}"
    basic_auth: {{username: ops, password: "pässwörd€"}}
rules:
  - {{name: latency, match: {{alertname: Slow}}, handler: performance_issue,
      diagnostics: {{queries: ["up"]}}}}
"""
        )
        config = load(path)
        db = db_for(tmp_path)
        fire(db, config, T0, alert(alertname="Slow"))
        recover_due(db, config, T0 + 1)
    [action] = actions(db)
    assert (action["status"], action["error"]) == ("succeeded", None)
    assert len(seen) == 1
    [query] = diagnostics_event(tmp_path)["data"]["queries"]
    assert query["result"]["total"] == 1
