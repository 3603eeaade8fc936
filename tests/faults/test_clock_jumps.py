"""The wall clock stepping back or forward an hour between ticks (Debian's `faketime` on the
`incident` process), with a real Alertmanager, a webhook, a PagerDuty mock and an SMTP server:
no negative duration, no incident resolved while its alerts fire, no recovery budget reset,
and an incident whose alerts cleared resolves within resolve_after, not an hour later."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from tests.support.faults import Ticker, db_rows, full_pipeline, post_alert
from tests.support.invariants import check

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("faketime") is None, reason="needs faketime (apt)"),
]
HOUR = 3600


def test_a_clock_stepped_back_an_hour_resolves_on_time_with_no_negative_duration(
    tmp_path: Path,
) -> None:
    db = tmp_path / "state.db"
    with full_pipeline(tmp_path, "~backend.*") as (am, got, ticker):
        post_alert(am.url, "backend")
        assert ticker.run().code == 0
        post_alert(am.url, "backend", resolved=True)
        ticker.jump(-HOUR)
        for _ in range(4):  # resolve_after is 1 s: a few polls are enough
            assert ticker.run().code == 0
            time.sleep(1.1)
        [(status, opened, resolved)] = db_rows(
            db, "SELECT status, opened_at, resolved_at FROM incidents"
        )
        assert status == "resolved"  # not an hour later, when the clock is back where it was
        assert resolved >= opened
        report = Ticker(tmp_path).run("report", "2", "--format", "json")  # on the real clock
        assert report.code == 0, report.stderr
        assert json.loads(report.stdout)["mttr_seconds"] >= 0
        verdict = check(tmp_path, db, got)
        assert verdict.violations == [] and verdict.duplicates == 0


def test_clock_steps_neither_resolve_firing_incidents_nor_reset_the_budget(
    tmp_path: Path,
) -> None:
    db = tmp_path / "state.db"
    failing = "echo $INCIDENT_ID-$INCIDENT_ATTEMPT >> attempts.log; exit 1"
    budget = "\n      max_attempts: 2\n      backoff: 20s\n      cooldown: 3h"
    services = ["backend-a", "backend-b", "backend-c"]
    with full_pipeline(tmp_path, "~backend.*", command=failing, recovery=budget) as (
        am,
        got,
        ticker,
    ):
        for service in services:
            post_alert(am.url, service)
        for step in (0, HOUR, -HOUR, -HOUR, HOUR, HOUR):
            ticker.jump(step)
            assert ticker.run().code in (0, 1)
            assert db_rows(db, "SELECT count(*) FROM incidents WHERE status != 'resolved'") == [
                (3,)
            ]
        # Each incident's two attempts, once each, whatever the clock did.
        assert len((tmp_path / "attempts.log").read_text().split()) == 2 * len(services)
        for service in services:
            post_alert(am.url, service, resolved=True)
        for _ in range(4):
            ticker.wait(130)
            ticker.run()
            time.sleep(1.1)
        verdict = check(tmp_path, db, got, max_attempts=2)
        assert verdict.violations == [] and verdict.duplicates == 0
