"""What every action kind shares: the claimed `Job`, a worker's `Outcome`, the `Decision`
about a due action, and the `ActionKind` protocol each kind implements."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NamedTuple, Protocol

from incident_cli.config.model import SourceConfig
from incident_cli.models import Incident
from incident_cli.recovery.process import CommandResult

if TYPE_CHECKING:
    from incident_cli.recovery.context import TickContext

# run: claim it and hand its job to a worker; now: nothing to run, the kind records it at once
# (in the claim's transaction); skip / refuse: finish it so with the reason; defer: leave it
# pending for a later tick; budget: skip it and escalate (its attempt budget is spent);
# approval: it would run, but waits for a human first; breaker: it would run, but the
# blast-radius breaker is open (or starting it would open it), so it stays pending.
Verdict = Literal["run", "now", "skip", "refuse", "defer", "budget", "approval", "breaker"]


class Due(NamedTuple):
    """A due action: its row, its incident, and the time it is decided (or recorded) at."""

    row: Mapping[str, Any]
    incident: Incident
    at: float


def _claim_token() -> str:
    import secrets  # with hmac and OpenSSL: only when an action is claimed

    return secrets.token_hex(8)


@dataclass(frozen=True)
class Job:
    """Claimed work for a worker thread: everything it needs, nothing of the DB."""

    action_id: int
    incident_id: int
    kind: str
    started_at: float
    attempt: int
    steps: tuple[tuple[str, ...], ...] = ()
    keep_going: bool = False  # run every step even after one fails (diagnostics)
    env: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 600.0
    cwd: str | None = None
    queries: tuple[str, ...] = ()
    source: SourceConfig | None = None
    query_timeout: float = 30.0
    verify_url: str | None = None
    verify: Mapping[str, Any] | None = None  # the rule's `verify`, as planned again now
    target: str | None = None  # what a block_ip acts on: the parsed IP
    left_out: tuple[str, ...] = ()  # labels over the environment budget
    token: str = field(default_factory=_claim_token)  # this claim's, on the row


@dataclass(frozen=True)
class Outcome:
    """What a worker did: each command's result, each query's, the first health check."""

    commands: tuple[CommandResult, ...] = ()
    queries: tuple[dict[str, Any], ...] = ()
    healthy: bool | None = None  # the health check right after a fix; None: not checked
    health_detail: str | None = None


@dataclass(frozen=True)
class Decision:
    """What to do with a due action, and why; `job` is set when the verdict is `run` (and
    for `approval` and `breaker`: what would run)."""

    verdict: Verdict
    reason: str | None = None
    job: Job | None = None

    @classmethod
    def run(cls, job: Job) -> Decision:
        return cls("run", None, job)


class ActionKind(Protocol):
    """One kind of action. `prepare` reads and decides (it writes nothing: the tick applies
    the decision, and a dry run or a replay only looks at it); `record` writes what was done,
    inside the transaction the tick holds, through `lifecycle` for any incident change."""

    name: ClassVar[str]

    def prepare(self, ctx: TickContext, due: Due, params: Mapping[str, Any]) -> Decision: ...

    def record(self, ctx: TickContext, due: Due, decision: Decision, outcome: Outcome) -> None: ...
