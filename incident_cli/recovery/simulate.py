"""Recovery as `recover` would decide it, on a scratch state, with nothing run (for replay)."""

from __future__ import annotations

from typing import NamedTuple

from incident_cli.config.model import Config
from incident_cli.recovery import breaker
from incident_cli.recovery.context import TickContext
from incident_cli.recovery.decision import decide_action
from incident_cli.recovery.due import claim
from incident_cli.recovery.tick import expire_approvals
from incident_cli.store import actions
from incident_cli.store.database import Database, write_tx
from incident_cli.store.incidents import get_incident


class Decided(NamedTuple):
    """One due action and recover's verdict on it (`run`, `now`, `skip`, `refuse`, `defer`,
    `budget`, `approval`, `breaker`), with its reason."""

    action_id: int
    verdict: str
    reason: str | None


def decide_due(db: Database, config: Config, now: float) -> list[Decided]:
    """Take every action due at `now` through `decide_action`, recover's one decision, and
    write what recover writes for it (skipped, refused, escalated, deferred, ...), except that
    an action recover would start is recorded as started and succeeded at once: nothing runs.

    A command's verification is not simulated (no command ran to verify): it never marks its
    incident fixed."""
    ctx = TickContext(db, config, now, None, dry_run=False)
    # What recover does before its due actions, but for leases and verifications: nothing
    # was left running, and nothing ran to verify. Nobody approves in a replay: a command
    # that waits for approval expires when its timeout passes.
    expire_approvals(ctx)
    breaker.auto_reset(db, config, now)
    decided: list[Decided] = []
    for action_id in actions.due(db, now, None):
        with write_tx(db):
            row = actions.load(db, action_id)
            incident = None if row is None else get_incident(db, row["incident_id"])
            if row is None or incident is None or row["status"] != "pending":
                continue
            decision = decide_action(ctx, row, incident, now)
        decided.append(Decided(action_id, decision.verdict, decision.reason))
        # claim decides the same way again and writes it as recover does; a `run` comes back
        # as the job a worker would have been given, with the action claimed.
        job = claim(ctx, action_id)
        if job is None:
            continue
        with write_tx(db):
            actions.finish(
                db,
                action_id,
                "succeeded",
                now,
                error=None,
                exit_code=0 if job.steps else None,
                output=None,
                only_if="running",
            )
    return decided
