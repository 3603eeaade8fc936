"""One poll: read every source (no transaction open), then apply the results in one transaction."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from incident_cli.config.model import Config
from incident_cli.errors import SourceError
from incident_cli.lifecycle.poll import PollResult, apply_poll
from incident_cli.models import Alert
from incident_cli.redact import redact
from incident_cli.runtime import TickRuntime
from incident_cli.store.database import Database


class _DryRun(Exception):
    def __init__(self, result: PollResult) -> None:
        self.result = result


def fetch_all(
    config: Config, runtime: TickRuntime | None = None
) -> tuple[dict[str, list[Alert]], dict[str, str]]:
    """Read every configured source, in parallel, each within its own timeout (cut to what is
    left of the tick): a slow source delays no other. A failure is recorded, never raised."""
    from incident_cli.intake.sources import fetch_alerts

    fetched: dict[str, list[Alert]] = {}
    failed: dict[str, str] = {}
    sources = list(config.sources.values())
    if not sources:
        return fetched, failed

    def one(name: str) -> tuple[str, list[Alert] | None, str | None]:
        source = config.sources[name]
        timeout = runtime.within(source.timeout) if runtime else source.timeout
        if timeout <= 0:
            return name, None, f"source {name}: not read: the tick reached its max runtime"
        started = time.monotonic()
        try:
            return name, fetch_alerts(source, timeout=timeout), None
        except SourceError as exc:
            return name, None, exc.message
        except Exception as exc:  # one source's surprise must not lose the others' results
            return name, None, f"source {name}: {exc.__class__.__name__}: {exc}"[:300]
        finally:
            if runtime is not None:
                runtime.spend(f"source {name}", time.monotonic() - started)

    if len(sources) == 1:
        results = [one(sources[0].name)]
    else:
        with ThreadPoolExecutor(max_workers=min(8, len(sources))) as pool:
            results = list(pool.map(one, [s.name for s in sources]))
    secrets = config.secrets()
    for name, alerts, error in results:
        if alerts is not None:
            fetched[name] = alerts
        else:
            failed[name] = redact(error or "failed", secrets)
    return fetched, failed


def describe_sources(result: PollResult) -> tuple[list[str], list[str], list[str]]:
    """What a poll says about its sources: (every failure, the failures that only repeat an
    earlier tick's, the sources that answer again).

    Cron mails every line, so a source that stays down is reported on its first failure and
    on its recovery; the repeats are for -v (`status` and the source-unreachable incident carry
    the state in between)."""
    errors: list[str] = []
    repeated: list[str] = []
    for name, error in result.failed_sources.items():
        if name in result.new_failures:
            errors.append(
                f"{error} (nothing changed for source {name}; not repeated until it answers"
                " again, see `incident status`)"
            )
        else:
            errors.append(f"{error} (nothing changed for source {name})")
            repeated.append(errors[-1])
    recovered = [f"source {name} answers again" for name in result.recovered_sources]
    return errors, repeated, recovered


def poll_once(
    db: Database,
    config: Config,
    now: float,
    *,
    dry_run: bool = False,
    runtime: TickRuntime | None = None,
) -> PollResult:
    """Fetch, then apply. With dry_run the transaction is rolled back: the DB is unchanged."""
    from incident_cli.handlers.planning import plan_blocks_now_over_threshold
    from incident_cli.store.database import write_tx

    fetched, failed = fetch_all(config, runtime)
    try:
        with write_tx(db):
            result = apply_poll(db, config, fetched, failed, now)
            # A security incident opened below its rule's min_value gets its block once an
            # alert's value reaches it, in the transaction of the poll that saw it.
            plan_blocks_now_over_threshold(db, config, fetched, now)
            if dry_run:
                raise _DryRun(result)
    except _DryRun as rollback:
        return rollback.result
    return result
