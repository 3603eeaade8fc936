"""What a recover run did, action by action, for the CLI and `run`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ActionReport:
    """One thing `recover` did (or, with --dry-run, would do) with an action."""

    action_id: int
    incident_id: int
    kind: str
    # succeeded failed refused skipped verifying waiting deferred lease-lost | would-*
    outcome: str
    detail: str | None = None
    argv: tuple[tuple[str, ...], ...] = ()
    attempt: int | None = None
    exit_code: int | None = None

    @property
    def lease_trouble(self) -> bool:
        """This host's lease ran out before it could record the outcome, or another host's
        run was failed as lost: worth a line in cron's mail, though not a failure of this tick."""
        return self.outcome == "lease-lost" or (
            self.outcome == "failed" and (self.detail or "").startswith("lost: ")
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "action_id": self.action_id,
            "incident_id": self.incident_id,
            "kind": self.kind,
            "outcome": self.outcome,
            "detail": self.detail,
            "argv": [list(a) for a in self.argv],
            "attempt": self.attempt,
            "exit_code": self.exit_code,
        }


@dataclass
class RecoverResult:
    """What one `recover` run did: each action, the escalations, the problems."""

    dry_run: bool = False
    actions: list[ActionReport] = field(default_factory=list)
    escalated: list[int] = field(default_factory=list)
    # actions that could not start: refused, program missing → exit 1
    problems: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "actions": [a.to_json() for a in self.actions],
            "escalated": self.escalated,
            "problems": self.problems,
        }
