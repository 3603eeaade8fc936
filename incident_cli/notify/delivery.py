"""Delivering the outbox: claim due rows with a lease, send with no transaction open, then mark.

Delivery is at-least-once and ordered per (incident, channel): a row is not sent while an
earlier row for the same incident and channel is still pending (waiting for its retry, say).
A `dead` row does not block the rows after it: it will never be sent, and holding back the
incident's later messages (its resolve above all) would leave the channel wrong forever.

A row is claimed by compare-and-swap (status pending, due, lease free) which sets a lease and
counts the attempt; the send runs with no transaction open; the result is written only by the
lease holder. A tick killed between send and mark leaves the row pending with its lease: once
the lease expires the next tick sends it again (PagerDuty's dedup_key makes that harmless).

The lease names its host, and the write that settles a row checks, in its WHERE, that the lease
is still this host's, with this claim's token, and not run out: a host that stalled past its
lease (and whose row another host may have sent and marked since) writes nothing; it reports
the lease as lost (`lost`), and a note on the incident's timeline says so.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from incident_cli.config.model import Config
from incident_cli.crashpoint import crash_point
from incident_cli.http import new_session
from incident_cli.models import OutboxRow
from incident_cli.notify.channels.base import Channel, Message, TransportError
from incident_cli.notify.channels.options import Options
from incident_cli.notify.channels.registry import build
from incident_cli.notify.outbox import pending_rows
from incident_cli.redact import redact
from incident_cli.runtime import TickRuntime
from incident_cli.store import outbox as store
from incident_cli.store.database import Database, write_tx
from incident_cli.store.incidents import exists
from incident_cli.store.timeline import add_event

if TYPE_CHECKING:
    from concurrent.futures import Executor, Future

    import requests

SHORT_RETRY_AFTER = 5.0  # a 429 asking for at most this long is waited for within the tick

MAX_SHORT_WAITS = 3  # ... at most this many times per row and tick

BACKOFF_BASE = 30.0  # first retry after 5xx / network error; doubles per attempt

BACKOFF_MAX = 3600.0

GIVE_UP_AFTER = 86400.0  # a row still failing this long after it was queued goes dead

LEASE_MIN = 30.0

DEFAULT_BUDGET = 40.0  # seconds one tick spends delivering; the rest waits for the next tick

MAX_ERROR = 500


@dataclass(frozen=True)
class Outcome:
    """What happened to one row this tick. status: sent, retry, dead, held, or lost (its lease
    ran out before its outcome could be written: the row is the next lease holder's)."""

    id: int
    channel: str
    event: str
    incident_id: int | None
    status: str
    attempts: int
    error: str | None = None
    next_attempt_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        from incident_cli.times import to_rfc3339

        return {
            "id": self.id,
            "channel": self.channel,
            "event": self.event,
            "incident_id": self.incident_id,
            "status": self.status,
            "attempts": self.attempts,
            "error": self.error,
            "next_attempt_at": to_rfc3339(self.next_attempt_at),
        }


@dataclass
class DeliveryReport:
    """What one delivery run did to each row, and how many due rows it left."""

    outcomes: list[Outcome] = field(default_factory=list)
    deferred: int = 0  # due rows left for the next tick (budget spent or channel backing off)

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def dead(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "dead"]

    @property
    def lost(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "lost"]

    def to_json(self) -> dict[str, Any]:
        return {
            "sent": self.count("sent"),
            "retrying": self.count("retry"),
            "dead": self.count("dead"),
            "held": self.count("held"),
            "lost": self.count("lost"),
            "deferred": self.deferred,
            "notifications": [o.to_json() for o in self.outcomes],
        }


def backoff(attempts: int) -> float:
    """Seconds before the next try after `attempts` failed ones: 30s, 1m, 2m, … at most 1h."""
    return float(min(BACKOFF_BASE * 2 ** max(attempts - 1, 0), BACKOFF_MAX))


def lease_seconds(channel: Channel[Options]) -> float:
    """Long enough to cover one send (SMTP: connect, TLS, login, data, each with a timeout)."""
    return max(LEASE_MIN, 4 * channel.timeout + 10)


def chains(rows: Iterable[OutboxRow]) -> list[list[OutboxRow]]:
    """Rows grouped per (incident, channel) in queue order; a storm row is a chain of its own."""
    grouped: dict[tuple[Any, ...], list[OutboxRow]] = {}
    for row in rows:
        key = ("storm", row.id) if row.incident_id is None else (row.incident_id, row.channel)
        grouped.setdefault(key, []).append(row)
    return sorted(grouped.values(), key=lambda chain: chain[0].id)


class _Delivery:
    """One tick's delivery: the DB side (claim and mark) around a channel's send."""

    def __init__(self, db: Database, config: Config, clock: Callable[[], float]) -> None:
        self.db = db
        self.config = config
        self.clock = clock
        self.secrets = config.secrets()
        self.host = config.host

    def claim(
        self, row: OutboxRow, channel: Channel[Options], token: str, facts: Any
    ) -> tuple[Message, int] | None:
        """Take the row if it is still pending, due, unleased and first in its chain.

        Returns the message to send and this attempt's number.
        """
        now = self.clock()
        with write_tx(self.db):
            claimed = store.claim(
                self.db,
                row.id,
                row.incident_id,
                row.channel,
                now,
                now + lease_seconds(channel),
                token,
                self.host,
            )
        if claimed is None:
            return None
        attempts, remote = claimed
        message = Message(
            id=row.id,
            channel=row.channel,
            event=row.event,
            facts=facts,
            incident_id=row.incident_id,
            remote_id=remote,
        )
        return message, int(attempts)

    def _event(
        self, row: OutboxRow, now: float, kind: str, message: str, attempts: int, **extra: Any
    ) -> None:
        assert row.incident_id is not None
        data = {
            "channel": row.channel,
            "event": row.event,
            "notification_id": row.id,
            "attempts": attempts,
            **extra,
        }
        add_event(self.db, row.incident_id, now, kind, message, data=data)

    def _lost(self, row: OutboxRow, now: float, attempts: int, what: str) -> str | None:
        """The settling write found the lease gone: the host stalled past it. Nothing was
        written; say so on the incident's timeline and return the reason. None when the row
        itself is gone (its incident archived meanwhile): there is nothing left to settle."""
        lease = store.lease_of(self.db, row.id)
        if lease is None:
            return None
        holder, until = lease
        now_held = (
            f"; host {holder} holds it now"
            if holder != self.host and until is not None and until >= now
            else ""
        )
        reason = (
            f"lease lost: host {self.host}'s lease on the {row.event} message to {row.channel}"
            f" ran out before it could be marked {what}{now_held}; the row's next lease holder"
            " settles it"
        )
        if exists(self.db, row.incident_id):
            self._event(row, now, "note", reason, attempts, lease="lost", host=self.host)
        return reason

    def mark_sent(
        self, row: OutboxRow, token: str, attempts: int, remote_id: str | None
    ) -> str | None:
        """Mark the row sent if this host still holds its lease; else the lease-lost reason."""
        now = self.clock()
        with write_tx(self.db):
            if not store.mark_sent(self.db, row.id, store.Claim(token, self.host, now)):
                return self._lost(row, now, attempts, "sent")
            if not exists(self.db, row.incident_id):
                return None
            if remote_id is not None:
                store.save_ref(self.db, row.incident_id, row.channel, remote_id)
            self._event(
                row,
                now,
                "notified",
                f"{row.event} message delivered to {row.channel}"
                + (f" (attempt {attempts})" if attempts > 1 else ""),
                attempts,
            )
        return None

    def mark_retry(
        self, row: OutboxRow, token: str, attempts: int, error: str, next_attempt_at: float
    ) -> str | None:
        now = self.clock()
        with write_tx(self.db):
            # Only the row changes: a retry is not an event in the incident's story.
            claim = store.Claim(token, self.host, now)
            if not store.mark_retry(self.db, row.id, claim, error, next_attempt_at):
                return self._lost(row, now, attempts, "for a retry")
        return None

    def mark_dead(self, row: OutboxRow, token: str, attempts: int, error: str) -> str | None:
        now = self.clock()
        with write_tx(self.db):
            if not store.mark_dead(self.db, row.id, store.Claim(token, self.host, now), error):
                return self._lost(row, now, attempts, "dead")
            if exists(self.db, row.incident_id):
                self._event(
                    row,
                    now,
                    "notification_failed",
                    f"{row.event} message to {row.channel} not delivered after"
                    f" {attempts} attempt(s): {error}",
                    attempts,
                    error=error,
                )
        return None

    def describe(self, exc: BaseException, channel: Channel[Options]) -> str:
        """An error as it may be stored and printed: no secret, one line, bounded."""
        if isinstance(exc, TransportError):
            text = exc.message
        else:
            text = f"{channel.type}: internal error: {exc.__class__.__name__}: {exc}"
        text = redact(" ".join(text.split()), [*self.secrets, *channel.secrets()])
        return text[:MAX_ERROR]


def deliver_due(
    db: Database,
    config: Config,
    *,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
    only_channel: str | None = None,
    budget: float | None = None,
    session: requests.Session | None = None,
    runtime: TickRuntime | None = None,
) -> DeliveryReport:
    """Send every due row once (in order per incident and channel, within rate limits).

    Sending stops after `budget` seconds (default: what is left of the tick's runtime, else
    DEFAULT_BUDGET); each send is cut off at that deadline too.
    """
    if runtime is not None:
        budget = runtime.remaining() if budget is None else min(budget, runtime.remaining())
    elif budget is None:
        budget = DEFAULT_BUDGET
    return _deliver(db, config, clock, sleep, monotonic, only_channel, budget, session, runtime)


def _deliver(
    db: Database,
    config: Config,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    monotonic: Callable[[], float],
    only_channel: str | None,
    budget: float,
    session: requests.Session | None,
    runtime: TickRuntime | None,
) -> DeliveryReport:
    report = DeliveryReport()
    built, work = _plan_work(db, config, clock(), only_channel, session, report)
    run = _SendingRun(
        _Delivery(db, config, clock),
        report,
        built,
        work,
        clock,
        monotonic,
        runtime,
        monotonic() + budget,
    )
    # Each channel sends on a thread of its own, one message at a time: a channel that hangs
    # until its timeout holds up its own rows only. Claims and marks stay on this thread. With
    # one channel to serve (or none: an idle tick imports no threads) it sends on this thread.
    if len(work) <= 1:
        run.loop(_SameThread(), sleep)
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=len(work), thread_name_prefix="notify") as pool:
            run.loop(pool, sleep)
    if session is None:
        for channel in built.values():
            if channel.session is not None:
                channel.session.close()
    if run.out_of_time:
        report.deferred += run.out_of_time
        if runtime is not None:
            runtime.leave(f"{run.out_of_time} notification(s)")
    return report


def _plan_work(
    db: Database,
    config: Config,
    now: float,
    only_channel: str | None,
    session: requests.Session | None,
    report: DeliveryReport,
) -> tuple[dict[str, Channel[Options]], dict[str, deque[list[OutboxRow]]]]:
    """The chains to send now, by channel, and each channel built once. A chain of a channel
    missing or disabled is held (reported, kept); one whose head waits for its retry or is
    leased by another tick waits whole."""
    built: dict[str, Channel[Options]] = {}
    work: dict[str, deque[list[OutboxRow]]] = {}
    for chain in chains(pending_rows(db, only_channel)):
        head = chain[0]
        channel_config = config.channels.get(head.channel)
        if channel_config is None or not channel_config.enabled:
            # Kept, not killed: a channel missing from this config (or an unset variable)
            # may be back next tick.
            why = (
                f"channel {head.channel} is not in the config"
                if channel_config is None
                else f"channel {head.channel} is disabled ({channel_config.disabled_reason})"
            )
            report.outcomes.extend(
                Outcome(r.id, r.channel, r.event, r.incident_id, "held", r.attempts, why)
                for r in chain
            )
            continue
        if head.next_attempt_at > now or (head.lease_until is not None and head.lease_until >= now):
            continue  # waiting for its retry, or another tick holds it: the chain waits too
        if head.channel not in built:
            # Without a session given, each channel keeps its own: channels send side by side,
            # and a requests session is not for several threads at once.
            built[head.channel] = build(channel_config, session or new_session())
        work.setdefault(head.channel, deque()).append(chain)
    return built, work


class _SendingRun:
    """One tick's sending: which channel sends next (rate limits, short Retry-After waits),
    claiming and starting a send, and settling what it returned."""

    def __init__(
        self,
        delivery: _Delivery,
        report: DeliveryReport,
        built: dict[str, Channel[Options]],
        work: dict[str, deque[list[OutboxRow]]],
        clock: Callable[[], float],
        monotonic: Callable[[], float],
        runtime: TickRuntime | None,
        deadline: float,
    ) -> None:
        self.delivery, self.report, self.built, self.work = delivery, report, built, work
        self.clock, self.monotonic, self.runtime, self.deadline = (
            clock,
            monotonic,
            runtime,
            deadline,
        )
        self.next_slot: dict[str, float] = {}
        self.short_waits: dict[int, int] = {}
        self.out_of_time = 0
        self.busy: dict[Future[str | None], _Sending] = {}

    def loop(self, pool: Executor | _SameThread, sleep: Callable[[float], None]) -> None:
        work, busy, next_slot, monotonic = self.work, self.busy, self.next_slot, self.monotonic
        while work or busy:
            if work and monotonic() >= self.deadline:
                self.out_of_time += sum(len(c) for q in work.values() for c in q)
                work.clear()
            sending = {s.channel for s in busy.values()}
            idle = sorted(
                (n for n in work if n not in sending), key=lambda n: next_slot.get(n, 0.0)
            )
            started_one = False
            for name in idle:
                slot = next_slot.get(name, 0.0)
                if slot > self.deadline:
                    self.out_of_time += sum(len(c) for c in work.pop(name))
                elif slot <= monotonic():
                    started_one = self.start_next(name, pool) or started_one
            if started_one:
                continue
            waiting = [next_slot.get(n, 0.0) for n in work if n not in sending]
            pause = max(min(waiting) - monotonic(), 0.0) if waiting else None
            if busy:
                from concurrent.futures import FIRST_COMPLETED, wait

                done, _ = wait(busy, timeout=pause, return_when=FIRST_COMPLETED)
                for future in sorted(done, key=lambda f: busy[f].chain[0].id):
                    self.settle(busy.pop(future), future)
            elif pause:
                sleep(pause)

    def start_next(self, name: str, pool: Executor | _SameThread) -> bool:
        """Claim the channel's next row and start sending it; False when none could start."""
        import secrets as token_source  # with hmac and OpenSSL: only when there is a row to send

        work, delivery = self.work, self.delivery
        while name in work:
            queue = work[name]
            chain = queue.popleft()
            if not queue:
                del work[name]
            row = chain[0]
            channel = self.built[name]
            token = token_source.token_hex(8)
            try:
                facts = json.loads(row.message)
                broken = None if isinstance(facts, dict) else "the queued message is not an object"
            except ValueError:
                facts, broken = {}, "the queued message is not valid JSON"
            claimed = delivery.claim(row, channel, token, facts)
            if claimed is None:
                continue  # not due yet, or claimed by another tick: the rest of the chain waits
            message, attempts = claimed
            crash_point("notify-claimed")
            if broken is not None:
                lost = delivery.mark_dead(row, token, attempts, broken)
                if self.record(row, "dead", attempts, broken, lost):
                    _continue_chain(work, name, chain[1:])
                continue
            started = self.monotonic()
            rate = channel.rate_limit
            self.next_slot[name] = started + (1.0 / rate if rate > 0 else 0.0)
            future = pool.submit(
                _timed_send, channel, message, self.deadline - started, self.runtime, self.monotonic
            )
            self.busy[future] = _Sending(name, chain, token, attempts)
            return True
        return False

    def settle(self, sending: _Sending, future: Future[str | None]) -> None:
        name, chain, token, attempts = sending
        row = chain[0]
        try:
            remote_id = future.result()
        except Exception as exc:
            self._after_failure(sending, exc)
            return
        crash_point("sent")
        lost = self.delivery.mark_sent(row, token, attempts, remote_id)
        if self.record(row, "sent", attempts, None, lost):
            _continue_chain(self.work, name, chain[1:])

    def record(
        self,
        row: OutboxRow,
        status: str,
        attempts: int,
        error: str | None,
        lost: str | None,
        next_attempt_at: float | None = None,
    ) -> bool:
        """Report the row's outcome, or `lost` when its lease ran out before the outcome could
        be written; False then (the rest of its chain is the next lease holder's)."""
        if lost is not None:
            status, error, next_attempt_at = "lost", lost, None
        about = (row.id, row.channel, row.event, row.incident_id)
        self.report.outcomes.append(Outcome(*about, status, attempts, error, next_attempt_at))
        return lost is None

    def _after_failure(self, sending: _Sending, exc: Exception) -> None:
        """Dead (permanent, or failing too long), a short wait within the tick (a small
        Retry-After), or a retry later with the channel's other rows deferred."""
        name, chain, token, attempts = sending
        row, channel = chain[0], self.built[name]
        work, report, delivery = self.work, self.report, self.delivery
        error = delivery.describe(exc, channel)
        permanent = isinstance(exc, TransportError) and exc.permanent
        retry_after = exc.retry_after if isinstance(exc, TransportError) else None
        now = self.clock()
        if not permanent and now - row.created_at >= GIVE_UP_AFTER:
            permanent = True
            error = f"gave up after {attempts} attempts over {GIVE_UP_AFTER / 3600:g}h: {error}"
        if permanent:
            lost = delivery.mark_dead(row, token, attempts, error)
            if self.record(row, "dead", attempts, error, lost):
                _continue_chain(work, name, chain[1:])
            return
        delay = retry_after if retry_after is not None else backoff(attempts)
        lost = delivery.mark_retry(row, token, attempts, error, now + delay)
        if lost is not None:
            self.record(row, "retry", attempts, error, lost)
            return
        short = (
            retry_after is not None
            and retry_after <= SHORT_RETRY_AFTER
            and self.monotonic() + retry_after < self.deadline
            and self.short_waits.get(row.id, 0) < MAX_SHORT_WAITS
        )
        if short and retry_after is not None:
            # Wait for it within this tick: the whole channel pauses, then this row goes
            # first. (The margin covers the two clocks' rounding.)
            self.short_waits[row.id] = self.short_waits.get(row.id, 0) + 1
            self.next_slot[name] = max(self.next_slot[name], self.monotonic() + retry_after + 0.05)
            work.setdefault(name, deque()).appendleft(chain)
            return
        self.record(row, "retry", attempts, error, None, now + delay)
        # The endpoint is down or throttling: leave the channel's other rows for the next
        # tick instead of spending a timeout on each.
        if name in work:
            report.deferred += sum(len(c) for c in work.pop(name))
        report.deferred += len(chain) - 1


class _SameThread:
    """Runs each job at once, on the calling thread (the one pool method the run uses)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        from concurrent.futures import Future

        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:
            future.set_exception(exc)
        return future


class _Sending(NamedTuple):
    """A send in flight: its channel, its chain (the row sent is the first), the claim."""

    channel: str
    chain: list[OutboxRow]
    token: str
    attempts: int


def _timed_send(
    channel: Channel[Options],
    message: Message,
    within: float,
    runtime: TickRuntime | None,
    monotonic: Callable[[], float],
) -> str | None:
    """Send within `within` seconds, and charge the time to the channel."""
    started = monotonic()
    try:
        return channel.send(message, within=within)
    finally:
        if runtime is not None:
            runtime.spend(f"channel {channel.name}", monotonic() - started)


def _continue_chain(
    work: dict[str, deque[list[OutboxRow]]], name: str, rest: list[OutboxRow]
) -> None:
    """The chain's next row goes next (a resolve follows its trigger without waiting a tick)."""
    if rest:
        work.setdefault(name, deque()).appendleft(rest)
