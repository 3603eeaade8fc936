"""`incident replay`: a rule file backtested against ALERTS history read with query_range."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from incident_cli.replay import history as history_module
from incident_cli.replay.engine import replay
from incident_cli.replay.history import History, Window, history_sources
from tests.support.binaries import run_cli
from tests.support.builders import T0, load, write_config
from tests.support.query_range import AlertHistory, record_requests, serve_history

MINUTE = 60.0
WINDOW = ("--since", "2027-01-15T08:00:00Z", "--until", "2027-01-15T08:20:00Z")

CONFIG = """
sources:
  prom: {{type: prometheus, url: "{url}"}}
incidents: {{resolve_after: 1m, reopen_within: 15m}}
channels:
  hook: {{type: webhook, url: "{hook}"}}
defaults: {{notify: [hook]}}
escalation: {{channels: [hook]}}
rules:
  - name: down
    match: {{alertname: Down}}
    handler: service_down
    group_by: [alertname, service]
    recovery: {{commands: [[touch, "{touched}"]], max_attempts: 1, cooldown: 1h}}
"""


def scripted() -> AlertHistory:
    history = AlertHistory()
    down = {"alertname": "Down", "service": "a", "severity": "critical"}
    # Fires, clears for two minutes, fires again: one incident, reopened once.
    history.add(down, (T0 + 1 * MINUTE, T0 + 10 * MINUTE), (T0 + 12 * MINUTE, T0 + 15 * MINUTE))
    history.add({"alertname": "Unmatched", "x": "1"}, (T0, T0 + 5 * MINUTE))
    return history


def write(tmp_path: Path, url: str, hook: str = "http://127.0.0.1:9/hook", **extra: str) -> Path:
    """The replay tests' config (OTHER.yaml with name=), with `more` appended."""
    body = CONFIG.format(url=url, hook=hook, touched=tmp_path / "touched")
    return write_config(tmp_path, body + extra.get("more", ""), extra.get("name", "incident.yaml"))


def replay_json(tmp_path: Path, config: Path, *args: str) -> Any:
    result = run_cli(
        [
            "-c",
            str(config),
            "replay",
            *WINDOW,
            "--step",
            "60s",
            "--format",
            "json",
            *args,
        ],
        cwd=tmp_path,
    )
    assert result.code == 0, result.stderr
    return result.json()


def test_replay_reports_incidents_actions_escalations_and_unmatched_alerts_as_json(
    tmp_path: Path,
) -> None:
    history = scripted()
    seen: list[str] = []
    with serve_history(history) as url, record_requests(seen) as hook:
        config = write(tmp_path, url, hook + "/hook")
        out = replay_json(tmp_path, config)
    assert list(out) == [
        "since",
        "until",
        "step_seconds",
        "ticks",
        "incidents",
        "notifications",
        "actions",
        "escalations",
        "unmatched_alerts",
    ]
    assert (out["since"], out["until"], out["step_seconds"], out["ticks"]) == (
        "2027-01-15T08:00:00Z",
        "2027-01-15T08:20:00Z",
        60.0,
        21,
    )
    down = next(i for i in out["incidents"] if i["rule"] == "down")
    assert down == {
        "rule": "down",
        "key": "down:alertname=Down,service=a",
        "labels": {"alertname": "Down", "service": "a"},
        "severity": "critical",
        "opened_at": "2027-01-15T08:01:00Z",
        # Gone at 08:10 (cleared), resolved at 08:11 (resolve_after 1m, two polls), back at
        # 08:12 (reopened), gone at 08:15, resolved at 08:16.
        "resolved_at": "2027-01-15T08:16:00Z",
        "reopen_count": 1,
        "flapping": False,
    }
    # The restart ran once; on the reopen the budget (max_attempts 1 per hour) stopped it
    # and the incident escalated instead.
    assert out["actions"] == [
        {
            "rule": "down",
            "kind": "command",
            "planned": 2,
            "would_run": 1,
            "stopped_by": {"budget": 1, "breaker": 0, "approval": 0},
        }
    ]
    assert [(e["rule"], e["at"]) for e in out["escalations"]] == [("down", "2027-01-15T08:12:00Z")]
    assert out["unmatched_alerts"] == [{"alertname": "Unmatched", "alerts": 1, "incidents": 1}]
    counts = {(n["channel"], n["event"]): n["count"] for n in out["notifications"]}
    assert counts == {("hook", "firing"): 3, ("hook", "resolved"): 3, ("hook", "escalation"): 1}
    # Nothing was sent and nothing ran; the state DB was not even created.
    assert seen == []
    assert not (tmp_path / "touched").exists()
    assert not (tmp_path / "incident.db").exists()
    # Each query asked for ALERTS firing, over the window at the step.
    assert {r["query"] for r in history.requests} == {'ALERTS{alertstate="firing"}'}
    assert {r["step"] for r in history.requests} == {"60"}


def test_a_long_window_is_read_in_chunks_with_the_same_outcome(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    history = scripted()
    with serve_history(history) as url:
        config = load(write(tmp_path, url))
        window = Window(T0, T0 + 20 * MINUTE, MINUTE)
        sources, _ = history_sources(config)
        whole = replay([config], window, History(sources, window).ticks())[0]
        monkeypatch.setattr(history_module, "FIRST_CHUNK_STEPS", 4)
        monkeypatch.setattr(history_module, "CHUNK_SAMPLES", 3)  # then one step a chunk
        reader = History(sources, window)
        chunked = replay([config], window, reader.ticks())[0]
    assert reader.queries >= 6  # the whole window took one
    assert chunked.to_json() == whole.to_json()


def test_compare_shows_two_rule_files_side_by_side_with_differences_marked(
    tmp_path: Path,
) -> None:
    with serve_history(scripted()) as url:
        config = write(tmp_path, url)
        other = write(
            tmp_path,
            url,
            name="other.yaml",
            more="  - {name: stray, match: {alertname: Unmatched}}\n",
        )
        result = run_cli(
            [
                "-c",
                str(config),
                "replay",
                *WINDOW,
                "--compare",
                str(other),
            ],
            cwd=tmp_path,
        )
    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "compared with" in result.stdout and str(other) in result.stdout
    # The rule added in OTHER takes the alert that fell to `default` before.
    stray = next(line for line in lines if " stray " in f" {line} ")
    assert stray.startswith("*") and "- → 1" in stray
    default = next(line for line in lines if line.lstrip("* ").startswith("default"))
    assert default.startswith("*") and "1 → -" in default
    down = next(line for line in lines if line.lstrip("* ").startswith("down "))
    assert not down.startswith("*")


def test_markdown_output_has_a_table_per_section(tmp_path: Path) -> None:
    with serve_history(scripted()) as url:
        config = write(tmp_path, url)
        result = run_cli(
            ["-c", str(config), "replay", *WINDOW, "--step", "1m", "-f", "markdown"],
            cwd=tmp_path,
        )
    assert result.code == 0, result.stderr
    assert result.stdout.startswith("# replay of ")
    assert "## Incidents per rule" in result.stdout
    assert "| rule | opened | reopened |" in result.stdout


def test_an_alertmanager_source_without_history_url_is_named_and_with_one_is_replayed(
    tmp_path: Path,
) -> None:
    with serve_history(scripted()) as url:
        config = tmp_path / "incident.yaml"
        config.write_text(
            f"sources:\n  prom: {{type: prometheus, url: '{url}'}}\n"
            "  am: {type: alertmanager, url: 'http://127.0.0.1:9'}\n"
            f"  am2: {{type: alertmanager, url: 'http://127.0.0.1:9', history_url: '{url}'}}\n"
        )
        result = run_cli(["-c", str(config), "replay", *WINDOW, "--format", "json"], cwd=tmp_path)
    assert result.code == 0, result.stderr
    assert result.stderr == (
        "incident: source am: an Alertmanager keeps no alert history; set"
        " sources.am.history_url to the Prometheus behind it to replay it\n"
    )
    # No rules: both alerts fell to `default`, read through prom and through am2's history.
    assert {i["rule"] for i in result.json()["incidents"]} == {"default"}
    assert len(result.json()["incidents"]) == 2


def test_with_no_source_to_replay_it_says_so_and_exits_78(tmp_path: Path) -> None:
    config = tmp_path / "incident.yaml"
    config.write_text("sources:\n  am: {type: alertmanager, url: 'http://127.0.0.1:9'}\n")
    result = run_cli(["-c", str(config), "replay", "--since", "1h"], cwd=tmp_path)
    assert result.code == 78
    assert "no source has a history to replay" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--since", "soon"], 2, "--since: expected a duration"),
        (["--since", "1h", "--step", "0s"], 2, "--step must be more than 0s"),
        (["--since", "1h", "--until", "2h"], 2, "--until must be later than --since"),
        (["--since", "30d", "--step", "1s"], 2, "too many"),
        (["--since", "1h", "--format", "html"], 2, "--format must be one of"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(
    tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    result = run_cli(["replay", *args], cwd=tmp_path)
    assert result.code == code, result.stderr
    assert message in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_a_history_that_cannot_be_read_exits_75(tmp_path: Path) -> None:
    history = AlertHistory(status=503)
    with serve_history(history) as url:
        config = write(tmp_path, url)
        result = run_cli(["-c", str(config), "replay", "--since", "1h"], cwd=tmp_path)
    assert result.code == 75
    assert "history of source prom" in result.stderr and "HTTP 503" in result.stderr
    assert len(result.stderr.splitlines()) == 1


# --------------------------------------------------------------------------- against live polls

LIVE_RULES = """
groups:
- name: live
  interval: 1s
  rules:
  - alert: ToyUp
    expr: toy_value > 0
    labels: {severity: warning}
"""

# Seconds from the start: when each exporter value turns on and off.
SCRIPT = {
    "n1": [(3, 20), (27, 40)],  # clears long enough to resolve, then fires again: a reopen
    "n2": [(8, 50)],
    "n3": [(15, 19)],
    "x1": [(12, 30)],  # matches no rule: `default`
}


@pytest.mark.integration
def test_replay_at_1s_opens_the_same_incidents_as_live_polls_every_second(tmp_path: Path) -> None:
    import time

    from incident_cli.times import parse_rfc3339, to_rfc3339
    from tests.support.binaries import stack

    with stack(tmp_path, LIVE_RULES, with_alertmanager=False) as (exporter, prom, _):
        config = tmp_path / "incident.yaml"
        config.write_text(
            f"sources: {{prometheus: {{type: prometheus, url: '{prom.url}', timeout: 5s}}}}\n"
            "incidents: {resolve_after: 3s, reopen_within: 1m}\n"
            "rules: [{name: toy, match: {alertname: ToyUp, name: '~n.*'},"
            " group_by: [alertname, name]}]\n"
        )
        start = time.time()
        polls: list[tuple[float, float]] = []
        for k in range(60):
            at = start + k
            time.sleep(max(0.0, at - time.time()))
            for name, spans in SCRIPT.items():
                exporter.set(name, 1 if any(a <= k < b for a, b in spans) else 0)
            before = time.time()
            assert run_cli(["-c", str(config), "poll"], cwd=tmp_path).code == 0
            polls.append((before, time.time()))
        listed = run_cli(["-c", str(config), "list", "--status", "all", "--json"], cwd=tmp_path)
        replayed = run_cli(
            [
                "-c",
                str(config),
                "replay",
                "--since",
                str(to_rfc3339(polls[0][0] - 1)),
                "--until",
                str(to_rfc3339(polls[-1][1])),
                "--step",
                "1s",
                "--format",
                "json",
            ],
            cwd=tmp_path,
        )
    assert replayed.code == 0, replayed.stderr
    live = {i["key"]: i for i in listed.json()}
    backtest = {i["key"]: i for i in replayed.json()["incidents"]}
    assert sorted(live) == sorted(backtest) and len(live) == 4
    # A live poll's clock is somewhere between its spawn and its exit; replay's ticks are 1 s
    # apart. "Within one step" is one step plus how late a live poll ran.
    late = max(end - begin for begin, end in polls) + max(
        b[0] - a[0] - 1 for a, b in itertools.pairwise(polls)
    )
    for key, incident in live.items():
        other = backtest[key]
        assert (other["rule"], other["reopen_count"]) == (
            incident["rule"],
            incident["reopen_count"],
        )
        for field in ("opened_at", "resolved_at"):
            assert (incident[field] is None) == (other[field] is None), (key, field)
            if incident[field] is not None:
                difference = abs(parse_rfc3339(incident[field]) - parse_rfc3339(other[field]))
                assert difference <= 1 + late, (key, field, difference, late)
    assert live["toy:alertname=ToyUp,name=n1"]["reopen_count"] == 1
    assert {i["rule"] for i in live.values()} == {"toy", "default"}


def test_replay_folds_a_storm_and_holds_a_mass_resolve_as_a_live_poll_would(
    tmp_path: Path,
) -> None:
    history = AlertHistory()
    for i in range(25):  # all at once: more than storm.max_new_per_tick
        history.add({"alertname": "Down", "service": f"s{i:02d}"}, (T0 + MINUTE, T0 + 5 * MINUTE))
    with serve_history(history) as url:
        path = write(tmp_path, url)
        path.write_text(
            path.read_text().replace(
                "incidents: {resolve_after: 1m, reopen_within: 15m}",
                "incidents: {resolve_after: 1m, storm: {max_new_per_tick: 20},"
                " mass_resolve_guard: {hold: 3m}}",
            )
        )
        out = replay_json(tmp_path, path)
    counts = {(n["channel"], n["event"]): n["count"] for n in out["notifications"]}
    # One storm summary instead of 25 firing messages; all 25 vanish at 08:05, which trips the
    # guard: one notice, and they resolve only after the 3 minute hold, at 08:08. (25
    # restarts at once also open the recovery breaker, on by default: its one notice.)
    assert counts == {
        ("hook", "storm"): 1,
        ("hook", "mass_resolve"): 1,
        ("hook", "resolved"): 1,
        ("hook", "breaker"): 1,
    }
    assert {i["resolved_at"] for i in out["incidents"]} == {"2027-01-15T08:08:00Z"}


def test_replay_counts_what_the_breaker_and_approval_would_have_stopped(tmp_path: Path) -> None:
    history = AlertHistory()
    for service in ("a", "b", "c"):  # three restarts due at once
        history.add({"alertname": "Down", "service": service}, (T0 + MINUTE, T0 + 15 * MINUTE))
    history.add({"alertname": "Careful", "service": "db"}, (T0 + MINUTE, T0 + 15 * MINUTE))
    with serve_history(history) as url:
        path = write(
            tmp_path,
            url,
            more="  - name: careful\n"
            "    match: {alertname: Careful}\n"
            "    handler: service_down\n"
            f"    recovery: {{commands: [[touch, '{tmp_path / 'careful'}']], approval: required,"
            " approval_timeout: 5m}\n"
            "recovery: {breaker: {max_actions: 1, within: 1h}}\n",
        )
        out = replay_json(tmp_path, path)
    actions = {(a["rule"], a["kind"]): a for a in out["actions"]}
    down = actions[("down", "command")]
    assert (down["planned"], down["would_run"]) == (3, 1)
    assert down["stopped_by"]["breaker"] == 2
    careful = actions[("careful", "command")]
    assert (careful["planned"], careful["would_run"]) == (1, 0)
    assert careful["stopped_by"]["approval"] == 1
    counts = {(n["channel"], n["event"]): n["count"] for n in out["notifications"]}
    assert counts[("hook", "breaker")] == 1
    assert counts[("hook", "approval")] == 1
    # Nobody approved it: past its timeout it expired and its incident escalated once.
    assert [e["rule"] for e in out["escalations"]] == ["careful"]
    assert not (tmp_path / "careful").exists() and not (tmp_path / "touched").exists()
