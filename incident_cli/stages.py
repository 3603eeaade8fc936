"""One whole tick: poll, detect-anomalies, sync, recover, notify — in order, each isolated from the
others' failures (a down source must not stop notifications from going out).

Notifications already due are also delivered before `recover`: a recovery command may run for
up to its timeout (10 minutes by default), and a new page must not wait behind it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from incident_cli.config.model import Config
from incident_cli.errors import ExitStatus, IncidentError
from incident_cli.runtime import TickRuntime
from incident_cli.store.database import (
    STORE_ERRORS,
    Database,
    db_file,
    describe_failure,
    rollback_open,
)

# sync before recover: an ack made in PagerDuty stops an escalation due this tick.
STAGES = ("poll", "detect-anomalies", "sync", "notify", "recover", "notify")
POLL_SHARE = 0.6  # of --max-runtime at most for the source reads: notify always gets its turn


@dataclass
class StageResult:
    name: str
    code: int = 0
    summary: str = ""
    errors: list[str] = field(default_factory=list)
    repeated: list[str] = field(default_factory=list)  # errors printed only with -v
    notes: list[str] = field(default_factory=list)  # printed like errors, but not failures
    data: dict[str, Any] = field(default_factory=dict)
    started_at: float = 0.0
    finished_at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "stage": self.name,
            "exit_code": self.code,
            "summary": self.summary,
            "errors": self.errors,
            "result": self.data,
        }


def _poll(
    db: Database,
    config: Config,
    clock: Callable[[], float],
    dry_run: bool,
    runtime: TickRuntime | None,
) -> StageResult:
    from incident_cli.intake.poll import describe_sources, poll_once

    reads = runtime
    if runtime is not None and runtime.limit is not None:
        # A source whose timeout is the whole limit would otherwise leave notify for a next
        # tick that the same source spends again: the healthy sources' pages never go out.
        reads = TickRuntime(min(runtime.remaining(), POLL_SHARE * runtime.limit))
        reads.spent = runtime.spent  # one account of what was slow, for the tick's line
    result = poll_once(db, config, clock(), dry_run=dry_run, runtime=reads)
    stage = StageResult(
        "poll",
        summary=f"opened {len(result.opened)}, reopened {len(result.reopened)},"
        f" resolved {len(result.resolved)}, updated {result.updated}"
        f" ({result.alerts_seen} alerts)" + (", storm" if result.storm else ""),
        data={
            "opened": result.opened,
            "reopened": result.reopened,
            "resolved": result.resolved,
            "updated": result.updated,
            "storm": result.storm,
            "failed_sources": result.failed_sources,
        },
    )
    stage.errors, stage.repeated, stage.notes = describe_sources(result)
    if reads is not runtime and reads is not None and runtime is not None and reads.expired:
        share = reads.limit or 0.0
        cut = [
            n for n in result.failed_sources if runtime.spent.get(f"source {n}", 0) >= share * 0.9
        ]
        if cut:
            stage.errors.append(
                f"source(s) {', '.join(cut)} cut off at {share:.1f}s,"
                f" {POLL_SHARE:.0%} of the max runtime of {runtime.limit or 0:g}s"
                " (--max-runtime), so that notify gets its turn"
            )
            if not set(cut) & set(result.new_failures):  # said on the first such tick
                stage.repeated.append(stage.errors[-1])
    if result.failed_sources:
        stage.code = int(ExitStatus.TEMPFAIL)
    return stage


def _detect(
    db: Database,
    config: Config,
    clock: Callable[[], float],
    dry_run: bool,
    runtime: TickRuntime | None,
) -> StageResult:
    from incident_cli.intake.anomaly import detect_anomalies

    result = detect_anomalies(db, config, clock(), dry_run=dry_run)
    stage = StageResult(
        "detect-anomalies",
        summary=f"{len(result.journeys)} journeys: opened {len(result.opened)},"
        f" reopened {len(result.reopened)}, resolved {len(result.resolved)}",
        data=result.to_json(),
    )
    if result.file_error:
        stage.errors.append(result.file_error)
        stage.code = int(ExitStatus.PARTIAL_FAILURE)
    if result.file is not None and result.file.skipped:
        stage.errors.append(
            f"skipped {result.file.skipped} malformed line(s) in {result.file.path}"
            f" (first at {result.file.first_problem})"
        )
    return stage


def _sync(
    db: Database,
    config: Config,
    clock: Callable[[], float],
    dry_run: bool,
    runtime: TickRuntime | None,
) -> StageResult:
    from incident_cli.intake.sync import sync_once, syncing_channels

    if not syncing_channels(config):
        return StageResult("sync", summary="no channel reads acks back")
    if dry_run:
        return StageResult("sync", summary="not read (dry run)")
    result = sync_once(db, config, clock(), runtime=runtime)
    stage = StageResult(
        "sync",
        summary=f"checked {result.checked}, acknowledged {len(result.acknowledged)},"
        f" resolved {len(result.resolved)}",
        errors=list(result.errors),
        notes=list(result.notes),
        data=result.to_json(),
    )
    if result.errors:
        stage.code = int(ExitStatus.TEMPFAIL)
    return stage


def _recover(
    db: Database,
    config: Config,
    clock: Callable[[], float],
    dry_run: bool,
    runtime: TickRuntime | None,
) -> StageResult:
    from incident_cli.recovery.tick import recover_due

    result = recover_due(db, config, clock(), dry_run=dry_run, runtime=runtime)
    stage = StageResult(
        "recover",
        summary=f"{len(result.actions)} action(s), {len(result.escalated)} escalation(s),"
        f" {result.problems} could not start",
        data=result.to_json(),
    )
    lines = [
        (a, f"action {a.action_id} ({a.kind}) of incident {a.incident_id} {a.outcome}: {a.detail}")
        for a in result.actions
    ]
    stage.notes.extend(line for a, line in lines if a.lease_trouble)
    if result.problems:
        stage.code = int(ExitStatus.PARTIAL_FAILURE)
        stage.errors.extend(
            line
            for a, line in lines
            if not a.lease_trouble
            and (a.outcome == "refused" or (a.outcome == "failed" and a.exit_code is None))
        )
    return stage


def _notify(
    db: Database,
    config: Config,
    clock: Callable[[], float],
    dry_run: bool,
    runtime: TickRuntime | None,
) -> StageResult:
    if dry_run:
        from incident_cli.notify.preview import preview_pending

        previews = preview_pending(db, config, clock(), None)
        return StageResult(
            "notify",
            summary=f"would send {sum(1 for p in previews if p.method)} notification(s)",
            data={"dry_run": True, "notifications": [p.to_json() for p in previews]},
        )
    from incident_cli.notify.delivery import deliver_due

    report = deliver_due(db, config, clock=clock, runtime=runtime)
    stage = StageResult(
        "notify",
        summary=f"sent {report.count('sent')}, retrying {report.count('retry')},"
        f" dead {report.count('dead')}, held {report.count('held')}",
        data=report.to_json(),
    )
    stage.notes.extend(
        f"notification {lost.id} to {lost.channel} ({lost.event}): {lost.error}"
        for lost in report.lost
    )
    for dead in report.dead:
        stage.code = int(ExitStatus.PARTIAL_FAILURE)
        about = f", incident {dead.incident_id}" if dead.incident_id is not None else ""
        stage.errors.append(
            f"notification {dead.id} to {dead.channel} ({dead.event}{about}) is dead: {dead.error}"
        )
    return stage


_Runner = Callable[[Database, Config, Callable[[], float], bool, TickRuntime | None], StageResult]
_RUNNERS: dict[str, _Runner] = {
    "poll": _poll,
    "detect-anomalies": _detect,
    "sync": _sync,
    "recover": _recover,
    "notify": _notify,
}


def run_tick(
    db: Database,
    config: Config,
    clock: Callable[[], float],
    *,
    dry_run: bool = False,
    on_stage_done: Callable[[StageResult], None] | None = None,
    runtime: TickRuntime | None = None,
) -> list[StageResult]:
    """Run every stage in order on one connection. A stage that fails is recorded with its exit
    code and error, and the next stage still runs. Once the tick's runtime is spent, the
    stages left are not started (exit 75; they run next tick)."""
    results: list[StageResult] = []
    for index, name in enumerate(STAGES):
        if runtime is not None and runtime.expired:
            left = STAGES[index:]
            runtime.leave("stage(s) " + ", ".join(dict.fromkeys(left)))
            results.extend(
                StageResult(n, code=int(ExitStatus.TEMPFAIL), summary="not run: out of time")
                for n in left
            )
            break
        started = clock()
        try:
            stage = _RUNNERS[name](db, config, clock, dry_run, runtime)
        except IncidentError as exc:
            stage = StageResult(name, code=int(exc.exit_status), errors=[exc.message])
        except STORE_ERRORS as exc:
            code, message = describe_failure(exc, db_file(db))
            stage = StageResult(name, code=code, errors=[message])
        except OSError as exc:
            stage = StageResult(name, code=int(ExitStatus.PARTIAL_FAILURE), errors=[str(exc)])
        except Exception as exc:  # one stage's bug must not keep notifications from going out
            stage = StageResult(
                name,
                code=int(ExitStatus.PARTIAL_FAILURE),
                errors=[f"internal error: {exc.__class__.__name__}: {exc}"],
            )
        rollback_open(db)  # a stage that died mid-transaction must not leak it
        stage.started_at, stage.finished_at = started, clock()
        results.append(stage)
        if on_stage_done is not None:
            on_stage_done(stage)
    return results
