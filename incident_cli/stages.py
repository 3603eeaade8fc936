"""One whole tick: poll, detect-anomalies, sync, recover, notify — in order, each isolated from the
others' failures (a down source must not stop notifications from going out).

Notifications already due are also delivered before `recover`: a recovery command may run for
up to its timeout (10 minutes by default), and a new page must not wait behind it.
"""

from __future__ import annotations

from collections.abc import Callable

from incident_cli.config.model import Config
from incident_cli.outcomes import (
    StageResult,
    detect_stage,
    failed_stage,
    notify_stage,
    out_of_time,
    poll_stage,
    recover_stage,
    sync_stage,
)
from incident_cli.runtime import TickRuntime
from incident_cli.store.database import Database, db_file, rollback_open

__all__ = ["STAGES", "StageResult", "run_tick"]

# sync before recover: an ack made in PagerDuty stops an escalation due this tick.
STAGES = ("poll", "detect-anomalies", "sync", "notify", "recover", "notify")
POLL_SHARE = 0.6  # of --max-runtime at most for the source reads: notify always gets its turn


def _poll(
    db: Database,
    config: Config,
    clock: Callable[[], float],
    dry_run: bool,
    runtime: TickRuntime | None,
) -> StageResult:
    from incident_cli.intake.poll import poll_once

    reads = runtime
    if runtime is not None and runtime.limit is not None:
        # A source whose timeout is the whole limit would otherwise leave notify for a next
        # tick that the same source spends again: the healthy sources' pages never go out.
        reads = TickRuntime(min(runtime.remaining(), POLL_SHARE * runtime.limit))
        reads.spent = runtime.spent  # one account of what was slow, for the tick's line
    result = poll_once(db, config, clock(), dry_run=dry_run, runtime=reads)
    stage = poll_stage(result)
    if reads is not runtime and reads is not None and runtime is not None and reads.expired:
        share = reads.limit or 0.0
        cut = [
            n for n in result.failed_sources if runtime.spent.get(f"source {n}", 0) >= share * 0.9
        ]
        if cut:
            stage.failed(
                "out of time",
                f"source(s) {', '.join(cut)} cut off at {share:.1f}s,"
                f" {POLL_SHARE:.0%} of the max runtime of {runtime.limit or 0:g}s"
                " (--max-runtime), so that notify gets its turn",
            )
            if not set(cut) & set(result.new_failures):  # said on the first such tick
                stage.repeated.append(stage.errors[-1])
    return stage


def _detect(
    db: Database,
    config: Config,
    clock: Callable[[], float],
    dry_run: bool,
    runtime: TickRuntime | None,
) -> StageResult:
    from incident_cli.intake.anomaly_result import DetectResult
    from incident_cli.store.journeys import names

    if not config.anomaly.journeys and not names(db):
        # No journeys file to read and no result recorded (`journey record`): the checks have
        # nothing to look at, and an idle tick need not import them.
        return detect_stage(DetectResult(dry_run=dry_run))
    from incident_cli.intake.anomaly import detect_anomalies

    return detect_stage(detect_anomalies(db, config, clock(), dry_run=dry_run))


def _sync(
    db: Database,
    config: Config,
    clock: Callable[[], float],
    dry_run: bool,
    runtime: TickRuntime | None,
) -> StageResult:
    if not config.syncing_channels():
        return StageResult("sync", summary="no channel reads acks back")
    if dry_run:
        return StageResult("sync", summary="not read (dry run)")
    from incident_cli.intake.sync import sync_once

    return sync_stage(sync_once(db, config, clock(), runtime=runtime))


def _recover(
    db: Database,
    config: Config,
    clock: Callable[[], float],
    dry_run: bool,
    runtime: TickRuntime | None,
) -> StageResult:
    from incident_cli.recovery.tick import recover_due

    return recover_stage(recover_due(db, config, clock(), dry_run=dry_run, runtime=runtime))


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

    return notify_stage(deliver_due(db, config, clock=clock, runtime=runtime))


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
            results.extend(out_of_time(n) for n in left)
            break
        started = clock()
        try:
            stage = _RUNNERS[name](db, config, clock, dry_run, runtime)
        except Exception as exc:  # one stage's failure (or bug) must not stop the others
            stage = failed_stage(name, exc, db_file(db))
        rollback_open(db)  # a stage that died mid-transaction must not leak it
        stage.started_at, stage.finished_at = started, clock()
        results.append(stage)
        if on_stage_done is not None:
            on_stage_done(stage)
    return results
