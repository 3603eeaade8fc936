"""Prometheus exposition of the state DB (prometheus_client writes the format) and the textfile."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from incident_cli.models import SEVERITIES
from incident_cli.reporting.report import RECOVERY_RESULTS
from incident_cli.store import rollups
from incident_cli.store import status as store_status
from incident_cli.store.actions import command_results, count_by_status
from incident_cli.store.connection import db_size
from incident_cli.store.database import Database
from incident_cli.store.incidents import unresolved_counts
from incident_cli.store.outbox import backlog, counts_by_channel
from incident_cli.store.reports import timing_sums
from incident_cli.store.safety import breaker_state

MTTR_WINDOW = 24 * 3600.0


class StateCollector:
    """A custom collector: every scrape (or textfile write) reads the DB once, nothing cached."""

    def __init__(self, db: Database, now: float, db_path: str | None = None) -> None:
        self.db = db
        self.now = now
        self.db_path = db_path

    def describe(self) -> list[Any]:
        return []  # registering must not query the DB

    def collect(self) -> Iterator[Any]:
        yield from self._incidents()
        yield from self._timings()
        yield from self._recovery()
        yield from self._outbox()
        yield from self._heartbeats()
        yield from self._sources()
        yield from self._self()

    def _incidents(self) -> Iterator[Any]:
        """Open incidents and the opened/reopened/resolved counters."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        open_now = GaugeMetricFamily(
            "incident_open_incidents",
            "Incidents not yet resolved, by severity and status (open or acknowledged).",
            labels=["severity", "status"],
        )
        counts = {(s, st): 0 for s in SEVERITIES for st in ("open", "acknowledged")}
        for status, severity, n in unresolved_counts(self.db):
            counts[(severity, status)] = n
        for (severity, status), n in sorted(counts.items()):
            open_now.add_metric([severity, status], n)
        yield open_now

        # Counted as each change happens (db.m007_counters), under the severity the incident
        # had then: a reopen, a raised severity or `archive` never makes a counter go down.
        helps = {
            "opened": "Incidents opened, by the severity they opened with.",
            "reopened": "Times a resolved incident reopened, by its severity then.",
            "resolved": "Times an incident resolved (again after each reopen), by its severity"
            " then.",
        }
        totals = {(name, s): 0 for name in helps for s in SEVERITIES}
        for name, severity, n in rollups.counters(self.db):
            totals[(name, severity)] = n
        for name, help_text in helps.items():
            counter = CounterMetricFamily(
                f"incident_incidents_{name}",
                help_text + " Archived incidents stay counted.",
                labels=["severity"],
            )
            for (counted, severity), n in sorted(totals.items()):
                if counted == name:
                    counter.add_metric([severity], n)
            yield counter

    def _timings(self) -> Iterator[Any]:
        """Mean MTTD, MTTA and MTTR of the last 24h, live rows and rollups together."""
        from prometheus_client.core import GaugeMetricFamily

        since = self.now - MTTR_WINDOW
        row = timing_sums(self.db, since, self.now)
        for i, (name, what) in enumerate(
            (
                ("mttd", "opened - started"),
                ("mtta", "acknowledged - opened"),
                ("mttr", "resolved - started"),
            )
        ):
            total, count = row[2 * i] or 0.0, row[2 * i + 1] or 0
            family = GaugeMetricFamily(
                f"incident_{name}_seconds",
                f"Mean {name.upper()} ({what}) of incidents opened in the last 24h;"
                " no sample when there is nothing to measure.",
                labels=["window"],
            )
            if count:
                family.add_metric(["24h"], total / count)
            yield family

    def _recovery(self) -> Iterator[Any]:
        """Recovery command results, archived ones included."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        recovery = CounterMetricFamily(
            "incident_recovery_actions",
            "Recovery command actions that finished, by result. Archived ones stay counted.",
            labels=["result"],
        )
        results = dict.fromkeys(RECOVERY_RESULTS, 0)
        for status, n in command_results(self.db):
            if status in results:
                results[status] += n
        rolled = rollups.recovery_totals(self.db, RECOVERY_RESULTS)
        for result, n in zip(RECOVERY_RESULTS, rolled, strict=True):
            results[result] += n
        for result, n in results.items():
            recovery.add_metric([result], n)
        yield recovery
        yield GaugeMetricFamily(
            "incident_recovery_breaker_open",
            "1 while the recovery breaker is open (no command or block_ip action starts).",
            value=1 if breaker_state(self.db)["opened_at"] is not None else 0,
        )
        yield GaugeMetricFamily(
            "incident_recovery_actions_awaiting_approval",
            "Recovery commands waiting for `incident approve`.",
            value=count_by_status(self.db, ("awaiting_approval",)).get("awaiting_approval", 0),
        )

    def _outbox(self) -> Iterator[Any]:
        """The outbox by channel and status, its depth and age, and the pending actions."""
        from prometheus_client.core import GaugeMetricFamily

        notes = GaugeMetricFamily(
            "incident_notifications",
            "Notifications in the outbox table, by channel and status (pending, sent, dead).",
            labels=["channel", "status"],
        )
        for channel, status, n in counts_by_channel(self.db):
            notes.add_metric([channel, status], n)
        yield notes

        depth, oldest = backlog(self.db)
        yield GaugeMetricFamily(
            "incident_outbox_depth", "Notifications waiting to be delivered.", value=depth
        )
        yield GaugeMetricFamily(
            "incident_outbox_oldest_pending_age_seconds",
            "Age of the oldest undelivered notification (0 when the outbox is empty).",
            value=max(self.now - oldest, 0.0) if oldest is not None else 0.0,
        )
        pending_actions = sum(count_by_status(self.db, ("pending", "running")).values())
        yield GaugeMetricFamily(
            "incident_pending_actions",
            "Recovery/diagnostic/escalation actions pending or running.",
            value=pending_actions,
        )

    def _heartbeats(self) -> Iterator[Any]:
        """Each command's last run, success, exit code and duration."""
        from prometheus_client.core import GaugeMetricFamily

        last_run = GaugeMetricFamily(
            "incident_last_run_timestamp_seconds",
            "When each command last ran (unix time).",
            labels=["command"],
        )
        last_ok = GaugeMetricFamily(
            "incident_last_success_timestamp_seconds",
            "When each command last exited 0 (unix time); no sample if it never did.",
            labels=["command"],
        )
        last_exit = GaugeMetricFamily(
            "incident_last_exit_code", "Exit code of each command's last run.", labels=["command"]
        )
        last_duration = GaugeMetricFamily(
            "incident_last_duration_seconds",
            "How long each command's last run took.",
            labels=["command"],
        )
        for beat in store_status.heartbeats(self.db):
            command, run_at, ok_at = beat["command"], beat["last_run_at"], beat["last_ok_at"]
            code, duration = beat["last_exit"], beat["last_duration"]
            last_run.add_metric([command], run_at)
            if ok_at is not None:
                last_ok.add_metric([command], ok_at)
            if code is not None:
                last_exit.add_metric([command], code)
            if duration is not None:
                last_duration.add_metric([command], duration)
        yield from (last_run, last_ok, last_exit, last_duration)

    def _sources(self) -> Iterator[Any]:
        """Each source's health."""
        from prometheus_client.core import GaugeMetricFamily

        up = GaugeMetricFamily(
            "incident_source_up",
            "1 when the source's last poll succeeded, else 0.",
            labels=["source"],
        )
        failures = GaugeMetricFamily(
            "incident_source_consecutive_failures",
            "Polls of the source that failed in a row.",
            labels=["source"],
        )
        for source in store_status.source_statuses(self.db):
            name, n = source["name"], source["consecutive_failures"]
            up.add_metric([name], 1 if n == 0 else 0)
            failures.add_metric([name], n)
        yield up
        yield failures

    def _self(self) -> Iterator[Any]:
        """Follow-ups, the DB's size and when these metrics were made."""
        from prometheus_client.core import GaugeMetricFamily

        from incident_cli.lifecycle.followups import followup_gauges

        followups_open, followups_overdue = followup_gauges(self.db, self.now)
        yield GaugeMetricFamily(
            "incident_followups_open",
            "Post-incident follow-ups not yet done.",
            value=followups_open,
        )
        yield GaugeMetricFamily(
            "incident_followups_overdue",
            "Follow-ups not done by their due time.",
            value=followups_overdue,
        )
        yield GaugeMetricFamily(
            "incident_db_size_bytes",
            "Size of the state DB on disk, WAL included.",
            value=db_size(self.db, self.db_path),
        )
        yield GaugeMetricFamily(
            "incident_metrics_generated_timestamp_seconds",
            "When these metrics were computed (unix time): alert when it stops moving.",
            value=self.now,
        )


def exposition(db: Database, now: float, db_path: str | None = None) -> bytes:
    """The text exposition format, written by prometheus_client."""
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(StateCollector(db, now, db_path))
    data: bytes = generate_latest(registry)
    return data


def write_file_atomically(path: str | Path, data: bytes, mode: int | None = 0o644) -> None:
    """Temp file in the same directory, fsync, then rename: readers see old or new, never half.

    node_exporter's textfile collector only reads names ending in `.prom`, so the temp name
    ends in `.tmp`. Mode 0644 by default: node_exporter runs as another user. `mode=None`: an
    existing file keeps its mode, a new one gets what the umask allows (as `>` in a shell).
    """
    from incident_cli.errors import IncidentError

    target = Path(path)
    if mode is None:
        mode = _mode_for(target)
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        # The error names the hidden temp file; the user named the target and its directory.
        problem = (
            f"the directory {target.parent} does not exist"
            if isinstance(exc, FileNotFoundError)
            else f"{exc.strerror} in {target.parent}"
        )
        raise IncidentError(f"cannot write {target}: {problem}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _mode_for(target: Path) -> int:
    try:
        return stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        umask = os.umask(0o077)  # there is no way to read the umask but to set it
        os.umask(umask)
        return 0o666 & ~umask
