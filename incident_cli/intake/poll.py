"""One poll: read every source (no transaction open), then apply the results in one transaction."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

from incident_cli.config.model import Config
from incident_cli.errors import SourceError
from incident_cli.lifecycle.poll import apply_poll
from incident_cli.lifecycle.result import PollResult
from incident_cli.models import Alert
from incident_cli.redact import mask_userinfo, redact
from incident_cli.runtime import TickRuntime
from incident_cli.store.database import Database


class _DryRun(Exception):
    def __init__(self, result: PollResult) -> None:
        self.result = result


@dataclass
class Intake:
    """What reading every source gave: the alerts of each source that answered, the error of
    each that did not, and for a source with replicas what each replica did (its masked URL
    and its error, None when it answered)."""

    fetched: dict[str, list[Alert]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    replicas: dict[str, dict[str, str | None]] = field(default_factory=dict)


def fetch_all(
    config: Config, runtime: TickRuntime | None = None
) -> tuple[dict[str, list[Alert]], dict[str, str]]:
    """Read every configured source: (alerts by source, error by failed source)."""
    intake = read_sources(config, runtime)
    return intake.fetched, intake.failed


def read_sources(config: Config, runtime: TickRuntime | None = None) -> Intake:
    """Read every configured source, and every replica of each, in parallel, each within its
    source's timeout (cut to what is left of the tick): a slow source or replica delays no
    other. A source is up while one of its replicas answers; their alerts are merged. A
    failure is recorded, never raised."""
    from incident_cli.intake.sources import fetch_alerts, merge_replicas

    intake = Intake()
    reads = [(s.name, url) for s in config.sources.values() for url in s.replicas]
    if not reads:
        return intake

    took: dict[str, float] = {}  # by source, its slowest replica's: they are read side by side

    def one(read: tuple[str, str]) -> tuple[list[Alert] | None, str | None]:
        name, url = read
        source = config.sources[name]
        if source.urls:
            source = replace(source, url=url, urls=())
        timeout = runtime.within(source.timeout) if runtime else source.timeout
        if timeout <= 0:
            return None, f"source {name}: not read: the tick reached its max runtime"
        started = time.monotonic()
        try:
            return fetch_alerts(source, timeout=timeout), None
        except SourceError as exc:
            return None, exc.message
        except Exception as exc:  # one source's surprise must not lose the others' results
            return None, f"source {name}: {exc.__class__.__name__}: {exc}"[:300]
        finally:
            took[name] = max(took.get(name, 0.0), time.monotonic() - started)

    if len(reads) == 1:
        results = [one(reads[0])]
    else:
        # Imported here: threads (and the logging they import) cost an idle tick with one
        # source start-up time for nothing.
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(8, len(reads))) as pool:
            results = list(pool.map(one, reads))
    if runtime is not None:
        for name, seconds in took.items():
            runtime.spend(f"source {name}", seconds)
    secrets = config.secrets()
    answers: dict[str, list[list[Alert]]] = {}
    errors: dict[str, list[tuple[str, str]]] = {}
    for (name, url), (alerts, error) in zip(reads, results, strict=True):
        answers.setdefault(name, [])
        errors.setdefault(name, [])
        replica = mask_userinfo(url)
        if alerts is not None:
            answers[name].append(alerts)
        else:
            errors[name].append((replica, redact(error or "failed", secrets)))
        if config.sources[name].urls:
            reason = None if alerts is not None else _reason(name, errors[name][-1][1])
            intake.replicas.setdefault(name, {})[replica] = reason
    for name in answers:
        if answers[name]:
            intake.fetched[name] = merge_replicas(answers[name])
        elif len(errors[name]) == 1:
            intake.failed[name] = errors[name][0][1]
        else:
            intake.failed[name] = f"source {name}: every replica failed: " + "; ".join(
                f"{replica}: {_reason(name, error)}" for replica, error in errors[name]
            )
    return intake


def _reason(name: str, error: str) -> str:
    """A source error without its leading `source NAME: `."""
    return error.removeprefix(f"source {name}: ")


def describe_sources(result: PollResult) -> tuple[list[str], list[str], list[str]]:
    """What a poll says about its sources: (every failure, the failures that only repeat an
    earlier tick's, the sources that answer again).

    Cron mails every line, so a source that stays down is reported on its first failure and
    on its recovery; the repeats are for -v (`status` and the source-unreachable incident carry
    the state in between)."""
    errors: list[str] = []
    repeated: list[str] = []
    for name, error in result.failed_sources.items():
        line = f"{error} (nothing changed for source {name}"
        _say_once(errors, repeated, line, new=name in result.new_failures)
    recovered = [f"source {name} answers again" for name in result.recovered_sources]
    # A replica down is not a source failure: a note (the tick's exit status does not
    # change), said on its first failure and on its recovery like a source's.
    for name, down in result.failed_replicas.items():
        for url, error in down.items():
            line = f"source {name}: replica {url} failed: {error} (the source answers through its"
            line += " other replicas"
            _say_once(recovered, repeated, line, new=(name, url) in result.new_replica_failures)
    recovered += [
        f"source {name}: replica {url} answers again" for name, url in result.recovered_replicas
    ]
    return errors, repeated, recovered


def _say_once(lines: list[str], repeated: list[str], line: str, *, new: bool) -> None:
    """Add `line` (an open parenthesis ends it) to `lines`; when it is not `new`, it repeats
    an earlier tick's and goes to `repeated` too (printed only with -v)."""
    if new:
        lines.append(f"{line}; not repeated until it answers again, see `incident status`)")
    else:
        lines.append(f"{line})")
        repeated.append(lines[-1])


def poll_once(
    db: Database,
    config: Config,
    now: float,
    *,
    dry_run: bool = False,
    runtime: TickRuntime | None = None,
) -> PollResult:
    """Fetch, then apply. With dry_run the transaction is rolled back: the DB is unchanged."""
    from incident_cli.crashpoint import crash_point
    from incident_cli.handlers.planning import plan_blocks_now_over_threshold
    from incident_cli.store.database import write_tx
    from incident_cli.store.status import record_replicas

    intake = read_sources(config, runtime)
    crash_point("poll-read")
    try:
        with write_tx(db):
            partial = [
                name
                for name, replicas in intake.replicas.items()
                if name in intake.fetched and any(e is not None for e in replicas.values())
            ]
            result = apply_poll(db, config, intake.fetched, intake.failed, now, partial=partial)
            for name, replicas in intake.replicas.items():
                new, recovered = record_replicas(db, name, replicas, now)
                if name in intake.failed:
                    continue  # the source's own failure says it all
                down = {url: error for url, error in replicas.items() if error is not None}
                if down:
                    result.failed_replicas[name] = down
                result.new_replica_failures += [(name, url) for url in new]
                result.recovered_replicas += [(name, url) for url in recovered]
            # A security incident opened below its rule's min_value gets its block once an
            # alert's value reaches it, in the transaction of the poll that saw it.
            plan_blocks_now_over_threshold(db, config, intake.fetched, now)
            if dry_run:
                raise _DryRun(result)
    except _DryRun as rollback:
        return rollback.result
    return result
