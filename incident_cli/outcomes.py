"""A stage's result → its exit status and the lines it says: the one mapping.

`incident run` (stages.py) and each single-stage command (`poll`, `detect-anomalies`, `sync`,
`recover`, `notify` in cli/) build their StageResult here, and every exception a command or a
stage meets is turned into a status and one line by `describe_exception`. So an outcome exits
the same and reads the same whichever command met it (inside `run` the line is prefixed with
the stage's name), and the heartbeat `status` shows records that same status and line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from incident_cli.errors import ExitStatus, IncidentError, worst_exit

if TYPE_CHECKING:
    from incident_cli.intake.anomaly_result import DetectResult
    from incident_cli.intake.sync import SyncResult
    from incident_cli.lifecycle.result import PollResult
    from incident_cli.notify.delivery import DeliveryReport
    from incident_cli.recovery.report import RecoverResult

# What each outcome of a stage means for the exit status (docs/commands.md, "Exit codes").
# A state DB failure's status is store.database.describe_failure's (busy and disk full: 75).
EXIT: dict[str, ExitStatus] = {
    "source failed": ExitStatus.TEMPFAIL,  # poll: unreachable or garbage; nothing changed for it
    "acks unreadable": ExitStatus.TEMPFAIL,  # sync: PagerDuty or Slack could not be read
    "out of time": ExitStatus.TEMPFAIL,  # --max-runtime spent: the rest runs next tick
    "journeys unreadable": ExitStatus.PARTIAL_FAILURE,  # detect-anomalies: the journeys file
    "action not started": ExitStatus.PARTIAL_FAILURE,  # recover: refused, or could not start
    "notification dead": ExitStatus.PARTIAL_FAILURE,  # notify: a permanent failure
}


@dataclass
class StageResult:
    """One stage's outcome: its exit code, summary line, errors, notes and JSON data."""

    name: str
    code: int = 0
    summary: str = ""
    errors: list[str] = field(default_factory=list)
    repeated: list[str] = field(default_factory=list)  # errors printed only with -v
    notes: list[str] = field(default_factory=list)  # printed like errors, but not failures
    data: dict[str, Any] = field(default_factory=dict)
    started_at: float = 0.0
    finished_at: float = 0.0

    def failed(self, outcome: str, line: str) -> None:
        """Record one failure: its line, and the status EXIT gives it."""
        self.code = worst_exit([self.code, int(EXIT[outcome])])
        self.errors.append(line)

    def error_text(self) -> str | None:
        """What the heartbeat keeps (`incident status`): every error line."""
        return "; ".join(self.errors) or None

    def to_json(self) -> dict[str, Any]:
        return {
            "stage": self.name,
            "exit_code": self.code,
            "summary": self.summary,
            "errors": self.errors,
            "result": self.data,
        }


def poll_stage(result: PollResult) -> StageResult:
    from incident_cli.intake.poll import describe_sources

    stage = StageResult(
        "poll",
        summary=f"opened {len(result.opened)}, reopened {len(result.reopened)},"
        f" resolved {len(result.resolved)}, updated {result.updated}"
        f" ({result.alerts_seen} alerts)"
        + (", storm: one summary per channel" if result.storm else ""),
        data={
            "opened": result.opened,
            "reopened": result.reopened,
            "resolved": result.resolved,
            "updated": result.updated,
            "storm": result.storm,
            "failed_sources": result.failed_sources,
        },
    )
    errors, stage.repeated, stage.notes = describe_sources(result)
    for line in errors:
        stage.failed("source failed", line)
    return stage


def detect_stage(result: DetectResult) -> StageResult:
    stage = StageResult(
        "detect-anomalies",
        summary=f"{len(result.journeys)} journeys: opened {len(result.opened)},"
        f" reopened {len(result.reopened)}, resolved {len(result.resolved)}",
        data=result.to_json(),
    )
    if result.file_error:
        stage.failed("journeys unreadable", result.file_error)
    if result.file is not None and result.file.skipped:
        stage.notes.append(
            f"skipped {result.file.skipped} malformed line(s) in {result.file.path}"
            f" (first at {result.file.first_problem})"
        )
    return stage


def sync_stage(result: SyncResult) -> StageResult:
    stage = StageResult(
        "sync",
        summary=f"checked {result.checked}, acknowledged {len(result.acknowledged)},"
        f" resolved {len(result.resolved)}",
        notes=list(result.notes),
        data=result.to_json(),
    )
    for line in result.errors:
        stage.failed("acks unreadable", line)
    return stage


def recover_stage(result: RecoverResult) -> StageResult:
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
    stage.notes.extend(line for a, line in lines if a.lease_trouble)  # a lease lost
    if result.problems:
        stage.code = worst_exit([stage.code, int(EXIT["action not started"])])
        stage.errors.extend(
            line
            for a, line in lines
            if not a.lease_trouble
            and (a.outcome == "refused" or (a.outcome == "failed" and a.exit_code is None))
        )
    return stage


def notify_stage(report: DeliveryReport) -> StageResult:
    stage = StageResult(
        "notify",
        summary=f"sent {report.count('sent')}, retrying {report.count('retry')},"
        f" dead {report.count('dead')}, held {report.count('held')}",
        data=report.to_json(),
    )
    stage.notes.extend(  # its lease was lost to another host: a note, not a failure
        f"notification {lost.id} to {lost.channel} ({lost.event}): {lost.error}"
        for lost in report.lost
    )
    for dead in report.dead:
        about = f", incident {dead.incident_id}" if dead.incident_id is not None else ""
        stage.failed(
            "notification dead",
            f"notification {dead.id} to {dead.channel} ({dead.event}{about}) is dead: {dead.error}",
        )
    return stage


def out_of_time(name: str) -> StageResult:
    """A stage a tick had no time left for: it runs next tick."""
    return StageResult(name, code=int(EXIT["out of time"]), summary="not run: out of time")


def describe_exception(exc: BaseException, db_path: str | None) -> tuple[int, str]:
    """(exit status, one line) for what a command or a stage raised: an IncidentError's own,
    a state DB failure's (busy or disk full: 75), an OS error's cause, else an internal error."""
    from incident_cli.store.database import STORE_ERRORS, describe_failure

    if isinstance(exc, IncidentError):
        return int(exc.exit_status), exc.message
    if isinstance(exc, STORE_ERRORS):
        return describe_failure(exc, db_path)
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        return int(ExitStatus.PARTIAL_FAILURE), f"{exc.strerror or exc}{where}"
    return int(ExitStatus.PARTIAL_FAILURE), f"internal error: {exc.__class__.__name__}: {exc}"


def failed_stage(name: str, exc: BaseException, db_path: str | None) -> StageResult:
    code, line = describe_exception(exc, db_path)
    return StageResult(name, code=code, errors=[line])
