"""The tests' one builder of alerts, polls and config files, and their injected clock."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from incident_cli.config.load import load_config
from incident_cli.config.model import Config
from incident_cli.intake.sources import fingerprint as fingerprint_of
from incident_cli.lifecycle.poll import apply_poll
from incident_cli.lifecycle.result import PollResult
from incident_cli.models import Alert
from incident_cli.store.database import Database
from incident_cli.times import parse_rfc3339

T0 = 1_800_000_000.0  # an injected clock (2027-01-15T08:00:00Z): every test starts here
# The journey tests' clock: their recorded results and files are dated the evening before.
JOURNEYS_NOW = parse_rfc3339("2026-11-28T21:00:00Z")

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

_FIRING = object()  # the default summary: "<alertname> is firing"


def alert(
    alertname: str = "BackendServiceDown",
    *,
    source: str = "prometheus",
    state: str = "firing",
    summary: str | object | None = _FIRING,
    starts_at: float | None = T0 - 60,
    fingerprint: str | None = None,
    **labels: str,
) -> Alert:
    """An alert as a source reports it: `alertname` and `labels`, a summary annotation (none
    with `summary=None`), started a minute before T0, fingerprinted by its labels."""
    all_labels = {"alertname": alertname, **labels}
    text = f"{alertname} is firing" if summary is _FIRING else summary
    return Alert(
        source=source,
        fingerprint=fingerprint or fingerprint_of(all_labels),
        labels=all_labels,
        annotations={"summary": str(text)} if text else {},
        state=state,
        starts_at=starts_at,
    )


def fire(
    db: Database, config: Config, now: float, *alerts: Alert, failed: tuple[str, ...] = ()
) -> PollResult:
    """One poll at `now` in which exactly these alerts fire: every configured source answers
    with its alerts (none for a source not named), except the `failed` ones, which are down."""
    fetched: dict[str, list[Alert]] = {name: [] for name in config.sources if name not in failed}
    for a in alerts:
        fetched.setdefault(a.source, []).append(a)
    return apply_poll(db, config, fetched, {name: "down" for name in failed}, now)


def prom_body() -> Any:
    """What Prometheus 2.42 answers on /api/v1/alerts (tests/fixtures): a recorded body."""
    return json.loads((FIXTURES / "prometheus-2.42" / "prometheus_v1_alerts.json").read_text())


def write_config(where: Path, text: str, name: str = "incident.yaml") -> Path:
    """`text` as the config file `name` in the directory `where`."""
    path = where / name
    path.write_text(text)
    return path


def load(path: Path, env: Mapping[str, str] | None = None) -> Config:
    """The config at `path`, read with a minimal environment (PATH, HOME) plus `env`."""
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(path.parent)}
    return load_config(path, {**base, **(env or {})})
