"""`incident test`: the smoke test for CI and after deploys — config, handlers, programs,
channels, state, sources, and a synthetic alert through the whole pipeline in a scratch DB."""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from incident_cli.config.model import Config

OK, FAILED, SKIPPED = "ok", "failed", "skipped"


@dataclass(frozen=True)
class Check:
    area: str
    status: str  # ok | failed | skipped
    detail: str

    def to_json(self) -> dict[str, str]:
        return {"check": self.area, "status": self.status, "detail": self.detail}


def run_checks(
    config: Config,
    db_path: str,
    now: Callable[[], float],
    *,
    offline: bool,
) -> Iterator[Check]:
    """Every check in order; the caller prints each as it comes."""
    yield from check_environment(config)
    yield from check_handlers(config)
    yield from check_programs(config)
    yield from check_channels(config)
    yield from check_state(db_path)
    yield from check_event_log(config)
    if offline:
        yield Check("sources", SKIPPED, "--offline")
    else:
        yield from check_sources(config)
    yield from check_pipeline(config, now)


def check_environment(config: Config) -> Iterator[Check]:
    """The behaviour variables that win over the file: a surprise unless someone says so."""
    from incident_cli.config.effective import override_text

    if not config.env_overrides:
        yield Check("environment", OK, "no environment variable overrides the config")
    for override in config.env_overrides:
        yield Check("environment", OK, override_text(override))


def check_handlers(config: Config) -> Iterator[Check]:
    from incident_cli.handlers.registry import load as load_handler

    for rule in config.rules:
        try:
            handler = load_handler(rule.handler)
        except Exception as exc:
            yield Check("handler", FAILED, f"rule {rule.name}: {rule.handler}: {exc}")
            continue
        yield Check("handler", OK, f"rule {rule.name} → {rule.handler} ({_qualname(handler)})")


def _qualname(func: Any) -> str:
    return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', '?')}"


def _programs(config: Config) -> Iterator[tuple[str, str, tuple[str, ...], str | None]]:
    """(rule, what, argv, why it is not used) for every command a rule may run."""
    for rule in config.rules:
        if rule.recovery:
            unused = None if config.recovery.enabled else "recovery is disabled"
            for argv in rule.recovery.commands:
                yield rule.name, "recovery", argv, unused
        if rule.diagnostics:
            for argv in rule.diagnostics.commands:
                yield rule.name, "diagnostics", argv, None
        if rule.security and rule.security.block_command:
            unused = None if config.security.auto_block else "security.auto_block is off"
            yield rule.name, "block", rule.security.block_command, unused


def find_program(program: str, base_dir: str) -> str | None:
    """Where a command's program is, as recover would find it (relative to the config file)."""
    if "/" in program:
        path = Path(base_dir, program)
        return str(path) if path.is_file() and os.access(path, os.X_OK) else None
    return shutil.which(program)


def check_programs(config: Config) -> Iterator[Check]:
    for rule, what, argv, unused in _programs(config):
        program = argv[0]
        label = f"rule {rule} {what}: {program}"
        found = find_program(program, config.base_dir)
        if found:
            yield Check("program", OK, f"{label} → {found}")
        elif unused:
            yield Check("program", SKIPPED, f"{label} not found, not needed: {unused}")
        else:
            yield Check("program", FAILED, f"{label}: not found on PATH")


def check_channels(config: Config) -> Iterator[Check]:
    if not config.channels:
        yield Check("channel", SKIPPED, "no channels configured")
    for channel in config.channels.values():
        if not channel.enabled:
            yield Check("channel", SKIPPED, f"{channel.name}: disabled ({channel.disabled_reason})")
            continue
        where = channel.options.endpoint()
        yield Check("channel", OK, f"{channel.name}: {channel.type} → {where}")


def check_event_log(config: Config) -> Iterator[Check]:
    """The JSON event log (`log.file`), when configured, can be appended to."""
    if config.log is None:
        return
    path = Path(config.log.file)
    if path.exists():
        ok = path.is_file() and os.access(path, os.W_OK)
    else:
        existing = path.parent
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        ok = existing.is_dir() and os.access(existing, os.W_OK | os.X_OK)
    if ok:
        yield Check("log", OK, f"events appended to {path}")
    else:
        yield Check("log", FAILED, f"{path} cannot be written (log.file)")


def check_state(db_path: str) -> Iterator[Check]:
    """The state directory is writable, and the DB (if any) has a schema this version knows."""
    path = Path(db_path)
    directory = path.parent
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        yield Check("state", FAILED, f"{existing} is not writable (state DB {path})")
        return
    from incident_cli.errors import UnsafeState
    from incident_cli.store.connection import check_state as refuse_unsafe_state

    try:
        refuse_unsafe_state(path)
    except UnsafeState as exc:
        yield Check("state", FAILED, exc.message)
        return
    yield Check("state", OK, f"{directory} is writable")
    if not path.exists():
        yield Check("db", OK, f"{path} will be created on the first tick")
        return
    from incident_cli.store.database import STORE_ERRORS
    from incident_cli.store.migrations import inspect

    try:
        applied, known = inspect(path)
    except STORE_ERRORS as exc:
        yield Check("db", FAILED, f"{path}: {exc}")
        return
    if applied - known:
        newer = ", ".join(sorted(applied - known))
        yield Check("db", FAILED, f"{path} was written by a newer incident ({newer})")
    elif known - applied:
        yield Check("db", OK, f"{path}: {len(known - applied)} migration(s) to apply next tick")
    else:
        yield Check("db", OK, f"{path}: migrations current ({len(applied)})")


def check_sources(config: Config) -> Iterator[Check]:
    from dataclasses import replace

    from incident_cli.errors import SourceError
    from incident_cli.intake.sources import fetch_alerts
    from incident_cli.redact import mask_userinfo, redact

    if not config.sources:
        yield Check("source", SKIPPED, "no sources configured")
    # Each replica of a source with `urls:` is checked on its own: set up, each should answer.
    replicas = [replace(s, url=url, urls=()) for s in config.sources.values() for url in s.replicas]
    for source in replicas:
        where = f"{source.name} ({source.type}) at {mask_userinfo(source.url)}"
        try:
            alerts = fetch_alerts(source)
        except SourceError as exc:
            reason = exc.message.removeprefix(f"source {source.name}: ")
            yield Check("source", FAILED, redact(f"{where}: {reason}", config.secrets()))
            continue
        firing = sum(1 for a in alerts if a.state == "firing")
        yield Check(
            "source",
            OK,
            redact(f"{where} answers: {len(alerts)} alerts, {firing} firing", config.secrets()),
        )


SELFTEST_LABELS = {"alertname": "IncidentSelfTest", "severity": "critical", "service": "selftest"}


def check_pipeline(config: Config, now: Callable[[], float]) -> Iterator[Check]:
    """A synthetic alert through poll → handler plan → recover (dry-run) → notify (dry-run) →
    resolve → report, in a scratch DB that is removed afterwards."""
    scratch = Path(tempfile.mkdtemp(prefix="incident-selftest-"))
    try:
        yield from _pipeline(config, now, scratch)
    except Exception as exc:
        yield Check("pipeline", FAILED, f"{exc.__class__.__name__}: {exc}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if scratch.exists():
            yield Check("pipeline", FAILED, f"could not remove the scratch directory {scratch}")


def _pipeline(config: Config, clock: Callable[[], float], scratch: Path) -> Iterator[Check]:
    from incident_cli.handlers.registry import load as load_handler
    from incident_cli.intake.sources import fingerprint
    from incident_cli.lifecycle.poll import apply_poll
    from incident_cli.models import ActionPlan, Alert, Incident
    from incident_cli.notify import outbox
    from incident_cli.notify.preview import preview_pending
    from incident_cli.recovery.tick import recover_due
    from incident_cli.reporting.report import build_report
    from incident_cli.store.connection import open_db
    from incident_cli.store.incidents import get_incident

    scratch_config = dataclasses.replace(config, db_path=str(scratch / "selftest.db"))
    db = open_db(scratch_config.db_path)
    try:
        now = clock()
        source = next(iter(config.sources), "selftest")
        alert = Alert(
            source=source,
            fingerprint=fingerprint(SELFTEST_LABELS),
            labels=SELFTEST_LABELS,
            annotations={"summary": "incident test: a synthetic alert"},
            state="firing",
            starts_at=now - 30,
        )
        others: dict[str, list[Alert]] = {name: [] for name in config.sources}
        polled = apply_poll(db, scratch_config, {**others, source: [alert]}, {}, now)
        if len(polled.opened) != 1:
            yield Check("pipeline", FAILED, f"poll opened {len(polled.opened)} incidents, not 1")
            return
        incident = get_incident(db, polled.opened[0])
        assert incident is not None
        yield Check(
            "pipeline", OK, f"poll: opened incident by rule {incident.rule} ({incident.handler})"
        )

        # Every rule's handler plans actions for an incident of its own.
        for rule in config.rules:
            probe = Incident(
                **{
                    **{f.name: getattr(incident, f.name) for f in dataclasses.fields(Incident)},
                    "rule": rule.name,
                    "handler": rule.handler,
                }
            )
            plans: Any = load_handler(rule.handler)(probe, alert, rule)
            bad = [p for p in plans or [] if not isinstance(p, ActionPlan)]
            if bad:
                yield Check("pipeline", FAILED, f"rule {rule.name}: handler returned {bad[0]!r}")
            else:
                kinds = ", ".join(p.kind for p in plans or []) or "nothing"
                yield Check("pipeline", OK, f"rule {rule.name}: handler plans {kinds}")

        recovered = recover_due(db, scratch_config, now, dry_run=True)
        yield Check("pipeline", OK, f"recover (dry-run): {len(recovered.actions)} action(s) due")

        # Render a firing message for every enabled channel, sending nothing.
        enabled = [c.name for c in config.channels.values() if c.enabled]
        outbox.queue(
            db, enabled, incident.id, "firing", outbox.message_for(config, incident, "firing"), now
        )
        previews = preview_pending(db, scratch_config, now)
        for channel in enabled:
            rendered = [p for p in previews if p.channel == channel and p.method]
            if rendered:
                yield Check("pipeline", OK, f"notify (dry-run): {channel} payload renders")
            else:
                notes = "; ".join(p.note or "" for p in previews if p.channel == channel)
                yield Check("pipeline", FAILED, f"notify (dry-run): {channel}: {notes}")

        later = now + config.incidents.resolve_after + 1
        apply_poll(db, scratch_config, {**others, source: []}, {}, later - 0.5)
        apply_poll(db, scratch_config, {**others, source: []}, {}, later)
        how = "auto-resolved after 2 polls without it"
        if not config.incidents.auto_resolve:
            from incident_cli.lifecycle.manual import resolve_by_hand

            resolve_by_hand(db, scratch_config, incident.id, "incident test", None, False, later)
            how = "resolved by hand (auto_resolve is off)"
        incident = get_incident(db, incident.id)
        if incident is None or incident.status != "resolved":
            yield Check("pipeline", FAILED, "the synthetic incident did not resolve")
            return
        yield Check("pipeline", OK, f"resolve: {how}")

        report = build_report(db, later, 1)
        from incident_cli.reporting.report import report_json

        numbers = report_json(report)["incidents"]
        if numbers.get("opened") == 1 and numbers.get("resolved") == 1:
            yield Check("pipeline", OK, "report: 1 opened, 1 resolved")
        else:
            yield Check("pipeline", FAILED, f"report counted {numbers}")
    finally:
        db.close()
