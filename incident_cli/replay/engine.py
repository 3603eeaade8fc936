"""Feeding alert history, tick by tick, through the same poll, planning, storm, flapping and
recovery decisions a live tick uses, on a scratch in-memory state with a simulated clock."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from incident_cli.config.model import DEFAULT_RULE, Config
from incident_cli.handlers.planning import plan_blocks_now_over_threshold
from incident_cli.lifecycle.poll import apply_poll
from incident_cli.models import Alert
from incident_cli.recovery.simulate import decide_due
from incident_cli.replay.history import Window
from incident_cli.store import replay as store
from incident_cli.store.connection import open_db
from incident_cli.store.database import Database, write_tx
from incident_cli.times import to_rfc3339

# What may stop a planned action, as `stopped_by` names it; always present, 0 when none did.
STOPPED_BY = ("budget", "breaker", "approval")


@dataclass(frozen=True)
class IncidentOutcome:
    rule: str
    key: str
    labels: Mapping[str, str]
    severity: str
    opened_at: float
    resolved_at: float | None
    resolution: str | None
    reopen_count: int
    flapping: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "key": self.key,
            "labels": dict(self.labels),
            "severity": self.severity,
            "opened_at": to_rfc3339(self.opened_at),
            "resolved_at": to_rfc3339(self.resolved_at),
            "reopen_count": self.reopen_count,
            "flapping": self.flapping,
        }


@dataclass
class ActionOutcome:
    rule: str
    kind: str
    planned: int = 0
    would_run: int = 0
    stopped_by: Counter[str] = field(default_factory=Counter)

    def to_json(self) -> dict[str, Any]:
        stopped = {name: self.stopped_by.get(name, 0) for name in STOPPED_BY}
        stopped.update(sorted((k, v) for k, v in self.stopped_by.items() if k not in stopped))
        return {
            "rule": self.rule,
            "kind": self.kind,
            "planned": self.planned,
            "would_run": self.would_run,
            "stopped_by": stopped,
        }


@dataclass(frozen=True)
class Replay:
    """What a rule file would have done over a window of history."""

    window: Window
    ticks: int
    incidents: list[IncidentOutcome]
    notifications: list[tuple[str, str, int]]
    actions: list[ActionOutcome]
    escalations: list[tuple[str, str, float, str | None]]
    unmatched: list[tuple[str, int, int]]  # (alertname, alerts, incidents) of the default rule

    def to_json(self) -> dict[str, Any]:
        return {
            "since": to_rfc3339(self.window.since),
            "until": to_rfc3339(self.window.until),
            "step_seconds": self.window.step,
            "ticks": self.ticks,
            "incidents": [i.to_json() for i in self.incidents],
            "notifications": [
                {"channel": c, "event": e, "count": n} for c, e, n in self.notifications
            ],
            "actions": [a.to_json() for a in self.actions],
            "escalations": [
                {"rule": rule, "key": key, "at": to_rfc3339(at), "reason": reason}
                for rule, key, at, reason in self.escalations
            ],
            "unmatched_alerts": [
                {"alertname": name, "alerts": alerts, "incidents": incidents}
                for name, alerts, incidents in self.unmatched
            ],
        }


class Engine:
    """One config replayed on its own scratch state; `tick` is one poll and one recover."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.db: Database = open_db(":memory:")
        self.ticks = 0
        # Each action recover declined to run, by the last verdict it gave (and its reason).
        self.stopped: dict[int, tuple[str, str | None]] = {}

    def tick(self, now: float, fetched: Mapping[str, list[Alert]]) -> None:
        db, config = self.db, self.config
        with write_tx(db):  # as poll_once: the poll and the blocks it makes due, together
            apply_poll(db, config, fetched, {}, now)
            plan_blocks_now_over_threshold(db, config, fetched, now)
        for decided in decide_due(db, config, now):
            if decided.verdict in ("run", "now"):
                continue
            first = self.stopped.get(decided.action_id)
            if first is not None and first[0] in STOPPED_BY:
                continue  # held by the breaker, then skipped as its incident resolved: the breaker
            self.stopped[decided.action_id] = (decided.verdict, decided.reason)
        self.ticks += 1

    def result(self, window: Window) -> Replay:
        db = self.db
        flapped = store.flapped(db)
        incidents = [
            IncidentOutcome(
                rule=i.rule,
                key=i.key,
                labels=i.labels,
                severity=i.severity,
                opened_at=i.opened_at,
                resolved_at=i.resolved_at,
                resolution=i.resolution,
                reopen_count=i.reopen_count,
                flapping=i.id in flapped,
            )
            for i in store.all_incidents(db)
        ]
        return Replay(
            window=window,
            ticks=self.ticks,
            incidents=incidents,
            notifications=store.notification_counts(db),
            actions=_actions(db, self.stopped),
            escalations=store.escalations(db),
            unmatched=[
                (name or "(no alertname)", alerts, n)
                for name, alerts, n in store.alerts_of_rule(db, DEFAULT_RULE.name)
            ],
        )


def stopped_by(status: str, verdict: str | None, reason: str | None) -> str | None:
    """What kept an action from running, by the name `stopped_by` counts it under: the last
    verdict recover gave it (its status and error when it was never due, as when a switch
    was off at planning); None for one that ran."""
    if status in ("succeeded", "failed", "running"):
        return None
    if status == "awaiting_approval":
        return "approval"
    if verdict in STOPPED_BY:
        return verdict
    if verdict == "refuse" or status == "refused":
        return "refused"
    if verdict == "defer":
        return "deferred"
    if status == "pending":
        return "not_due"
    text = (reason or "").lower()
    if "incident resolved" in text:
        return "resolved"
    if "already escalated" in text or "acknowledged" in text or "already blocked" in text:
        return "already_handled"
    return "switched_off" if " is off" in text or "disabled" in text else "other"


def _actions(db: Database, stopped: Mapping[int, tuple[str, str | None]]) -> list[ActionOutcome]:
    by_key: dict[tuple[str, str], ActionOutcome] = {}
    for action_id, rule, kind, status, error in store.action_outcomes(db):
        outcome = by_key.setdefault((rule, kind), ActionOutcome(rule, kind))
        outcome.planned += 1
        verdict, reason = stopped.get(action_id, (None, error))
        name = stopped_by(status, verdict, reason)
        if name is None:
            outcome.would_run += 1
        else:
            outcome.stopped_by[name] += 1
    return [by_key[k] for k in sorted(by_key)]


def replay(
    configs: list[Config],
    window: Window,
    history: Iterable[tuple[float, Mapping[str, list[Alert]]]],
) -> list[Replay]:
    """Each config replayed over the same history, read once and fed to all of them in step."""
    engines = [Engine(config) for config in configs]
    for now, fetched in history:
        for engine in engines:
            engine.tick(now, fetched)
    return [engine.result(window) for engine in engines]
