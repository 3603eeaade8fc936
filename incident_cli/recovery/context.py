"""`TickContext`: one `recover` run's DB, config, clock and result, and the writes every
action kind shares (finish an action, refuse it, skip it, report what was done)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from typing import Any

from incident_cli.config.model import Config
from incident_cli.handlers.planning import PLAN_REF
from incident_cli.lifecycle.changes import escalate
from incident_cli.models import Incident
from incident_cli.recovery.report import ActionReport, RecoverResult
from incident_cli.redact import redact
from incident_cli.runtime import TickRuntime
from incident_cli.store import actions
from incident_cli.store.database import Database
from incident_cli.store.timeline import add_event

MAX_STORED_OUTPUT = 8192  # tail kept in actions.output

HEALTH_TIMEOUT = 10.0


def display_url(url: str) -> str:
    """The URL without any user:password@ part, for messages."""
    return re.sub(r"^(https?://)[^/@]*@", r"\1", url)


def loads(text: str | None) -> Any:
    return json.loads(text) if text else {}


def number(params: Mapping[str, Any], key: str, default: float) -> float:
    value = params.get(key)
    return float(value) if isinstance(value, int | float) else default


def plan_ref(row: Mapping[str, Any]) -> object:
    """Which of its rule's plans an action row refers to."""
    return loads(row["params"]).get(PLAN_REF)


def within(runtime: TickRuntime | None, timeout: float) -> float:
    """A wait on a peer, cut to what is left of the tick."""
    return timeout if runtime is None else runtime.within(timeout)


class TickContext:
    """One `recover` run: the DB, the config, the clock, and what was done."""

    def __init__(
        self,
        db: Database,
        config: Config,
        now: float,
        incident_id: int | None,
        dry_run: bool,
        runtime: TickRuntime | None = None,
    ) -> None:
        self.db = db
        self.config = config
        self.runtime = runtime
        self.start = now
        self.t0 = time.monotonic()
        self.incident_id = incident_id
        self.result = RecoverResult(dry_run=dry_run)
        self.blocks_left = config.security.max_blocks_per_tick
        self.starting = 0  # a dry run: the fixes it would have started so far (the breaker)
        self.secrets = config.secrets()
        self.host = config.host  # named on every claim

    @property
    def dry_run(self) -> bool:
        return self.result.dry_run

    def now(self) -> float:
        """The injected start time moved on by the real time spent in this tick."""
        return self.start + (time.monotonic() - self.t0)

    def mask(self, text: str) -> str:
        return redact(text, self.secrets)

    def report(self, row: Mapping[str, Any], outcome: str, detail: str | None, **kw: Any) -> None:
        if detail is not None:
            detail = self.mask(detail)
        self.result.actions.append(
            ActionReport(row["id"], row["incident_id"], row["kind"], outcome, detail, **kw)
        )

    def finish(
        self,
        row: Mapping[str, Any],
        status: str,
        at: float,
        *,
        error: str | None = None,
        exit_code: int | None = None,
        output: str | None = None,
        only_if: str = "pending",
    ) -> bool:
        """Settle the action row (masked, bounded), if it is still in status `only_if`."""
        return actions.finish(
            self.db,
            row["id"],
            status,
            at,
            error=None if error is None else self.mask(error)[:2000],
            exit_code=exit_code,
            output=None if output is None else self.mask(output)[-MAX_STORED_OUTPUT:],
            only_if=only_if,
        )

    def refuse(self, row: Mapping[str, Any], incident: Incident, why: str, at: float) -> None:
        why = self.mask(why)
        self.finish(row, "refused", at, error=why)
        add_event(
            self.db,
            incident.id,
            at,
            "action_refused",
            f"refused {row['kind']}: {why}",
            data={"action_id": row["id"], "kind": row["kind"], "reason": why},
        )
        self.result.problems += 1
        self.report(row, "refused", why)

    def skip(self, row: Mapping[str, Any], incident: Incident, why: str, at: float) -> None:
        self.finish(row, "skipped", at, error=why)
        add_event(
            self.db,
            incident.id,
            at,
            "action_skipped",
            f"skipped {row['kind']}: {why}",
            data={"action_id": row["id"], "kind": row["kind"], "reason": why},
        )
        self.report(row, "skipped", why)

    def escalate(
        self, incident: Incident, at: float, reason: str, budget_key: str | None = None
    ) -> None:
        """Escalate through the lifecycle, once; note it in the result when it did."""
        if escalate(self.db, self.config, incident, at, reason, budget_key):
            self.result.escalated.append(incident.id)
