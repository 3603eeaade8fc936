"""Receivers that misbehave and a Prometheus restarted under a firing alert, with the real
binaries, a webhook, a PagerDuty Events v2 mock and an SMTP server: every message is delivered
(or dead with a reason), the only duplicates are answers that came after the sender's timeout,
and the incident neither resolves nor reopens while its source is away."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support.binaries import ToyExporter, http_json, start_prometheus, wait_until
from tests.support.faults import db_rows, full_pipeline, pipeline_config, post_alert, slow_loris
from tests.support.invariants import check, unmarked

pytestmark = pytest.mark.integration


def test_slow_loris_flapping_500s_timeouts_429s_and_smtp_451s_deliver_everything(
    tmp_path: Path,
) -> None:
    db = tmp_path / "state.db"
    with slow_loris() as loris, full_pipeline(tmp_path, "backend") as (am, got, ticker):
        config = (tmp_path / "incident.yaml").read_text()
        (tmp_path / "incident.yaml").write_text(config.replace(got.hook.url, loris))
        flaps = [(500, {}, b"down"), (200, {"X-Delay": "2.5"}, b"ok")]  # then accepted
        got.behave["hook"] = lambda i: flaps[i] if i < len(flaps) else None
        got.behave["pd"] = lambda i: (429, {"Retry-After": "1"}, b"") if i == 0 else None
        got.mail_replies.extend(["451 4.3.0 try again later"] * 2)
        post_alert(am.url, "backend")
        started = time.monotonic()
        assert ticker.run().code == 0
        assert time.monotonic() - started < 30  # the loris was cut off at the timeout
        [(error,)] = db_rows(db, "SELECT error FROM notifications WHERE channel = 'hook'")
        assert "timed out" in error or "timeout" in error, error
        (tmp_path / "incident.yaml").write_text(config)  # the loris is gone
        post_alert(am.url, "backend", resolved=True)
        for _ in range(6):  # past each backoff (30 s, 1 m, 2 m) on the ticks' clock
            ticker.wait(130)
            ticker.run()
            time.sleep(1.1)
        verdict = check(tmp_path, db, got)
        assert verdict.violations == []
        # The one answer that came after the 2 s timeout was sent again: that duplicate.
        assert got.late() == 1
        assert verdict.duplicates == unmarked(db, got) == 1
        assert [t.status for t in got.taken["pd"]][:2] == [429, 202]
        assert len(got.mail) == 2


def test_a_prometheus_restart_while_its_alert_fires_neither_resolves_nor_reopens(
    tmp_path: Path,
) -> None:
    db = tmp_path / "state.db"
    toy = ToyExporter()
    rules = (
        "groups:\n- name: g\n  rules:\n  - alert: BackendDown\n"
        "    expr: 'toy_value{name=\"down\"} == 1'\n"
        "    labels: {service: backend, severity: critical}\n"
    )
    prom = start_prometheus(tmp_path / "prom", rules, [toy.address])

    def firing() -> bool:
        try:
            return "firing" in str(http_json(prom.url + "/api/v1/alerts"))
        except OSError:
            return False

    try:
        toy.set("down", 1)
        with full_pipeline(tmp_path, "backend") as (am, got, ticker):
            source = f'{{type: prometheus, url: "{prom.url}", timeout: 5s}}'
            (tmp_path / "incident.yaml").write_text(
                pipeline_config(
                    am.url,
                    got.hook.url,
                    "backend",
                    0.1,
                    pagerduty_url=got.pagerduty.url,
                    smtp_port=got.smtp_port,
                    source=source,
                )
            )
            wait_until(firing)
            assert ticker.run().code == 0
            for stop in (prom.stop, prom.kill):
                stop()
                down = ticker.run()
                assert down.code == 75, down.stderr  # the source failed: nothing changed
                assert "am" in down.stderr and "Traceback" not in down.stderr
                prom.start()
                wait_until(firing)
                assert ticker.run().code == 0
                assert db_rows(db, "SELECT status, reopen_count FROM incidents") == [("open", 0)]
            toy.set("down", 0)
            wait_until(lambda: not firing())
            for _ in range(3):
                ticker.run()
                time.sleep(1.1)
            verdict = check(tmp_path, db, got)
            assert verdict.violations == [] and verdict.duplicates == 0
            assert sum(got.accepted().values()) == 6  # firing and resolved, on each channel
    finally:
        prom.stop()
        toy.close()
