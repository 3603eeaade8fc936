"""Anomaly detection over synthetic-journey results: the three checks and the incidents they drive.

Per journey, over its newest `window` results (ordered by `at`, then by arrival; results dated
more than journeys.FUTURE_TOLERANCE, 5 minutes, ahead of the clock wait until their time):

- failure rate: failures / window > fail_threshold; needs a full window; equal does not trip.
- p95 latency: p95 of the window > p95_factor x p95 of the window before it; needs both windows
  full. The p95 is linearly interpolated (numpy's default "linear" method, Python's
  statistics.quantiles(method="inclusive")): over the n sorted values it sits at rank 0.95·(n-1)
  (from 0), between the two neighbouring values in proportion. It is taken over the window's
  *successful* results: a failed run's latency is how fast it failed (a refused connection is
  quick, a timeout is the timeout), which says nothing about how slow the journey is when it
  works, and failures are what the other two checks count. A window with no successful result,
  or a baseline of 0 ms, has no p95 to compare.
  Why not nearest rank (the ⌈0.95·n⌉-th value): below 20 results it is the slowest result, so at
  the default window of 12 one run at 151 ms over a flat 100 ms tripped the check, and one slow
  run in the window before hid a sustained jump. Interpolated, at n = 12 the slowest value
  weighs 45%: one run trips the check only when it is more than 1 + (factor - 1) / 0.45 times the
  baseline (2.1 x at factor 1.5); a sustained jump still trips it.
- consecutive failures: the newest `consecutive_failures` results all failed (needs that many).

One incident per journey (labels {"alertname": "JourneyAnomaly", "journey": NAME}, source
"anomaly"), critical when failures run, else warning, through lifecycle.raise_external. Its
timeline data names every check that tripped with its numbers; a change in the set of tripped
checks while it is open is a `note` with the new data. It resolves once a whole window of results
newer than the newest result it (re)opened on passes every check, unless incidents.auto_resolve
is off: then it stays open (outcome `kept_open`, one note saying so) until resolved by hand.
Everything happens in one write transaction per run, and a run on the same data as the last one
changes nothing.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from incident_cli.config.model import AnomalyConfig, Config
from incident_cli.intake import journeys
from incident_cli.intake.anomaly_result import DetectResult, FileReport
from incident_cli.intake.journeys import JourneyResult
from incident_cli.models import Incident
from incident_cli.store.database import Database, savepoint, write_tx
from incident_cli.store.incidents import latest_by_key
from incident_cli.store.timeline import kinds_and_data
from incident_cli.times import parse_rfc3339

ALERTNAME = "JourneyAnomaly"
SOURCE = "anomaly"
FAILURE_RATE = "failure_rate"
P95_LATENCY = "p95_latency"
CONSECUTIVE_FAILURES = "consecutive_failures"


# --------------------------------------------------------------------------- the checks


def p95(values: Sequence[float]) -> float | None:
    """Linearly interpolated 95th percentile (rank 0.95·(n-1) between neighbours); None for no
    values."""
    if not values:
        return None
    ordered = sorted(values)
    # The rank in hundredths, in integers, as statistics.quantiles does: no float error at the
    # rank, so an exact rank gives exactly the measured value.
    low, weight = divmod(95 * (len(ordered) - 1), 100)
    if weight == 0:
        return ordered[low]
    return (ordered[low] * (100 - weight) + ordered[low + 1] * weight) / 100


@dataclass(frozen=True)
class Check:
    """One check that tripped, with the numbers that tripped it."""

    name: str
    numbers: Mapping[str, float | int]
    onset: float  # when the problem it shows began (the `at` of a result)

    def describe(self) -> str:
        n = self.numbers
        if self.name == FAILURE_RATE:
            return (
                f"failure rate {n['failure_rate']:.1%} > {n['threshold']:.1%}"
                f" ({n['failures']} of the last {n['results']} failed)"
            )
        if self.name == P95_LATENCY:
            return (
                f"p95 latency {n['p95_ms']:g} ms > {n['factor']:g} x {n['baseline_p95_ms']:g} ms"
                " (the window before)"
            )
        return f"{n['run']} failures in a row (threshold {n['threshold']})"


@dataclass(frozen=True)
class Evaluation:
    """The checks of one journey over its newest results."""

    journey: str
    results: int  # in the newest window (at most `window`)
    window_full: bool
    failures: int
    failure_rate: float | None
    p95_ms: float | None
    baseline_p95_ms: float | None
    failure_run: int
    newest_at: float | None
    window_start_at: float | None  # `at` of the oldest result of the newest window
    tripped: tuple[Check, ...] = ()

    @property
    def severity(self) -> str:
        return (
            "critical" if any(c.name == CONSECUTIVE_FAILURES for c in self.tripped) else "warning"
        )


def evaluate(journey: str, results: Sequence[JourneyResult], settings: AnomalyConfig) -> Evaluation:
    """Run the three checks on a journey's newest results (oldest first). Pure."""
    size = settings.window
    window = results[-size:]
    previous = results[-2 * size : -size] if len(results) >= 2 * size else ()
    full = len(window) == size
    failures = sum(1 for r in window if not r.ok)
    rate = failures / len(window) if window else None
    tripped: list[Check] = []

    if full and rate is not None and rate > settings.fail_threshold:
        first_failure = next(r.at for r in window if not r.ok)
        tripped.append(
            Check(
                FAILURE_RATE,
                {
                    "failure_rate": round(rate, 6),
                    "threshold": settings.fail_threshold,
                    "failures": failures,
                    "results": len(window),
                },
                first_failure,
            )
        )

    current_p95 = p95([r.latency_ms for r in window if r.ok and r.latency_ms is not None])
    baseline = p95([r.latency_ms for r in previous if r.ok and r.latency_ms is not None])
    if not full:
        current_p95 = None
    if (
        current_p95 is not None
        and baseline is not None
        and baseline > 0
        and current_p95 > settings.p95_factor * baseline
    ):
        tripped.append(
            Check(
                P95_LATENCY,
                {
                    "p95_ms": round(current_p95, 6),  # interpolated: no float noise in JSON
                    "baseline_p95_ms": round(baseline, 6),
                    "factor": settings.p95_factor,
                    "limit_ms": round(settings.p95_factor * baseline, 3),
                },
                window[0].at,
            )
        )

    run = 0
    for r in reversed(results):
        if r.ok:
            break
        run += 1
    if run >= settings.consecutive_failures:
        tripped.append(
            Check(
                CONSECUTIVE_FAILURES,
                {"run": run, "threshold": settings.consecutive_failures},
                results[-run].at,
            )
        )

    return Evaluation(
        journey=journey,
        results=len(window),
        window_full=full,
        failures=failures,
        failure_rate=rate,
        p95_ms=current_p95,
        baseline_p95_ms=baseline if len(previous) == size else None,
        failure_run=run,
        newest_at=results[-1].at if results else None,
        window_start_at=window[0].at if window else None,
        tripped=tuple(tripped),
    )


# --------------------------------------------------------------------------- a run


@dataclass(frozen=True)
class JourneyOutcome:
    """What a run found for one journey and did about it.

    action: opened | reopened | changed (the tripped checks changed) | firing (unchanged) |
    recovering (checks pass; waiting for a whole window newer than the opening) | resolved |
    kept_open (checks pass, but incidents.auto_resolve is off: a person resolves it) |
    held (resolved by hand; waits for a result newer than that) | ok.
    """

    evaluation: Evaluation
    action: str
    incident_id: int | None = None

    def to_json(self) -> dict[str, Any]:
        e = self.evaluation
        return {
            "journey": e.journey,
            "results": e.results,
            "window_full": e.window_full,
            "failures": e.failures,
            "failure_rate": None if e.failure_rate is None else round(e.failure_rate, 6),
            "p95_ms": None if e.p95_ms is None else round(e.p95_ms, 6),
            "baseline_p95_ms": None if e.baseline_p95_ms is None else round(e.baseline_p95_ms, 6),
            "failure_run": e.failure_run,
            "newest_at": None if e.newest_at is None else journeys.format_at(e.newest_at),
            "tripped": [_check_json(e.journey, c) for c in e.tripped],
            "action": self.action,
            "incident": self.incident_id,
        }


def _check_json(journey: str, check: Check) -> dict[str, Any]:
    return {"check": check.name, "journey": journey, **check.numbers}


def detect_anomalies(
    db: Database, config: Config, now: float, *, dry_run: bool = False
) -> DetectResult:
    """Read new journey results from the file, run the checks, open/update/resolve incidents.

    The file is read before the write transaction (no lock held over I/O); storing what was read,
    its new offset and every incident change is one transaction. With `dry_run` that
    transaction is rolled back: the result says what would have happened.
    """
    settings = config.anomaly
    result = DetectResult(dry_run=dry_run)
    path = settings.journeys
    read: journeys.FileRead | None = None
    prior: journeys.FileState | None = None
    if path:
        prior = journeys.load_file_state(db, path)
        try:
            read = journeys.read_new_lines(path, prior, now)
        except OSError as exc:
            result.file_error = f"cannot read the journeys file {path}: {exc.strerror or exc}"

    # a savepoint, so a dry run inside a caller's transaction undoes only itself
    undo = savepoint(db, "detect_anomalies") if dry_run else contextlib.nullcontext()
    with write_tx(db), undo:
        if path and read is not None:
            stored = 0
            # The tick lock makes this always true; if another reader got here first,
            # its offset stands and these lines wait for the next tick.
            if journeys.load_file_state(db, path) == prior:
                stored = journeys.store_results(db, read.results, "file")
                journeys.save_file_state(db, path, read.state)
            result.file = FileReport(
                path=path,
                lines=read.lines,
                stored=stored,
                skipped=read.skipped,
                first_problem=read.first_problem,
                reset=read.reset,
                more=read.more,
            )
        need = max(2 * settings.window, settings.consecutive_failures)
        evaluations = [
            evaluate(r.journey, r.results, settings) for r in journeys.recent_results(db, need, now)
        ]
        _apply(db, config, evaluations, now, result)
    return result


# --------------------------------------------------------------------------- incidents


def labels_for(journey: str) -> dict[str, str]:
    return {"alertname": ALERTNAME, "journey": journey}


@dataclass(frozen=True)
class _Recorded:
    """What the open incident's timeline says: the newest result it (re)opened on, the checks
    that tripped at the last change, and every journey named since it (re)opened."""

    marker: float | None
    tripped: frozenset[tuple[str, str]]
    journeys: frozenset[str]


def _recorded(db: Database, incident: Incident) -> _Recorded:
    events: list[tuple[str, Mapping[str, Any] | None]] = []
    for kind, text in kinds_and_data(db, incident.id):
        parsed = None
        if text and '"checks"' in text:
            try:
                loaded = json.loads(text)
            except ValueError:
                loaded = None
            if isinstance(loaded, dict) and isinstance(loaded.get("checks"), list):
                parsed = loaded
        events.append((kind, parsed))
    start = max(
        (i for i, (kind, _) in enumerate(events) if kind in ("opened", "reopened")), default=0
    )
    marker: float | None = None
    tripped: frozenset[tuple[str, str]] = frozenset()
    names: set[str] = set()
    for _, data in events[start:]:
        if data is None:
            continue
        pairs = {
            (str(c.get("journey")), str(c.get("check")))
            for c in data["checks"]
            if isinstance(c, dict)
        }
        tripped = frozenset(pairs)
        names.update(j for j, _ in pairs)
        if marker is None and isinstance(data.get("newest_result_at"), str):
            try:
                marker = parse_rfc3339(data["newest_result_at"])
            except ValueError:
                marker = None
    return _Recorded(marker=marker, tripped=tripped, journeys=frozenset(names))


def _data(evaluations: Sequence[Evaluation], settings: AnomalyConfig) -> dict[str, Any]:
    newest = max((e.newest_at for e in evaluations if e.newest_at is not None), default=None)
    return {
        "journeys": [e.journey for e in evaluations],
        "checks": [_check_json(e.journey, c) for e in evaluations for c in e.tripped],
        "window": settings.window,
        "newest_result_at": None if newest is None else journeys.format_at(newest),
    }


def _describe(evaluations: Sequence[Evaluation]) -> str:
    return "; ".join(
        f"journey {e.journey}: " + ", ".join(c.describe() for c in e.tripped)
        for e in evaluations
        if e.tripped
    )


def _apply(
    db: Database,
    config: Config,
    evaluations: list[Evaluation],
    now: float,
    result: DetectResult,
) -> None:
    from incident_cli.lifecycle.routing import route

    # Journeys are grouped by incident key: normally one each, but a rule may group several
    # journeys into one incident, which then trips when any of them does.
    groups: dict[str, list[Evaluation]] = {}
    for e in evaluations:
        groups.setdefault(route(config, labels_for(e.journey)).key, []).append(e)
    outcomes: dict[str, JourneyOutcome] = {}
    for key, members in groups.items():
        action, incident_id = _apply_group(db, config, key, members, now, result)
        for e in members:
            outcomes[e.journey] = JourneyOutcome(e, action, incident_id)
    result.journeys = [outcomes[e.journey] for e in evaluations]


def _apply_group(
    db: Database,
    config: Config,
    key: str,
    members: list[Evaluation],
    now: float,
    result: DetectResult,
) -> tuple[str, int | None]:
    from incident_cli.lifecycle.detectors import clear_external, raise_external, raise_severity

    settings = config.anomaly
    latest = latest_by_key(db, key)
    is_open = latest is not None and latest.status != "resolved"
    tripping = [e for e in members if e.tripped]

    if tripping:
        newest = max(e.newest_at or 0.0 for e in tripping)
        if (
            latest is not None
            and not is_open
            and latest.resolution in ("manual", "false_positive")
            and latest.resolved_at is not None
            and newest <= latest.resolved_at
        ):
            # Someone resolved it by hand on this evidence; only newer results can raise it.
            return "held", latest.id
        severity = "critical" if any(e.severity == "critical" for e in tripping) else "warning"
        message = _describe(tripping)
        data = _data(tripping, settings)
        recorded = _recorded(db, latest) if is_open and latest is not None else None
        incident, what = raise_external(
            db,
            config,
            labels=labels_for(tripping[0].journey),
            annotations={"summary": f"Synthetic journey anomaly: {message}"[:1000]},
            source=SOURCE,
            severity=severity,
            now=now,
            started_at=min(c.onset for e in tripping for c in e.tripped),
            message=message,
            data=data,
        )
        if what == "opened":
            result.opened.append(incident.id)
            return "opened", incident.id
        if what == "reopened":
            raise_severity(db, config, incident, severity, now, f"severity raised to {severity}")
            result.reopened.append(incident.id)
            return "reopened", incident.id
        now_tripped = frozenset((c["journey"], c["check"]) for c in data["checks"])
        if recorded is not None and now_tripped == recorded.tripped:
            return "firing", incident.id
        note = f"checks tripped now: {message}"
        if incident.severity != severity and severity == "critical":
            raise_severity(
                db, config, incident, severity, now, f"{note} (severity raised to critical)", data
            )
        else:
            from incident_cli.store.timeline import add_event

            add_event(db, incident.id, now, "note", note, data=data)
        result.changed.append(incident.id)
        return "changed", incident.id

    if latest is None or not is_open or latest.source != SOURCE:
        return "ok", None
    recorded = _recorded(db, latest)
    marker = recorded.marker if recorded.marker is not None else latest.opened_at
    watched = recorded.journeys or {e.journey for e in members}
    by_name = {e.journey: e for e in members}
    fresh = all(
        name in by_name
        and by_name[name].window_full
        and (by_name[name].window_start_at or 0.0) > marker
        for name in watched
    )
    data = _data(members, settings)
    # incidents.auto_resolve off (INCIDENT_AUTO_RESOLUTION_ENABLED=false): a person resolves
    # every incident. clear_external honours it too; checking here as well keeps the outcome
    # and the note truthful rather than claiming a resolve that did not happen.
    auto = config.incidents.auto_resolve
    if fresh and auto:
        names = ", ".join(sorted(watched))
        after = clear_external(
            db,
            config,
            latest,
            now,
            f"journey {names}: a whole window of {settings.window} results newer than the"
            " opening passed every check",
            data,
        )
        if after.status == "resolved":
            result.resolved.append(latest.id)
            return "resolved", latest.id
        auto = False  # the lifecycle declined: it stays open, and the outcome says so
    if recorded.tripped:
        from incident_cli.store.timeline import add_event

        if auto:
            note = (
                f"every check passes again; resolves after a whole window of {settings.window}"
                " results newer than the opening"
            )
        else:
            note = (
                "every check passes again; auto-resolve is off (incidents.auto_resolve),"
                " so it stays open until resolved by hand"
            )
        add_event(db, latest.id, now, "note", note, data=data)
        result.changed.append(latest.id)
    return ("recovering" if auto else "kept_open"), latest.id
