"""The small frozen records that cross module borders: Alert, Incident, ActionPlan."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from incident_cli.times import to_rfc3339

INCIDENT_STATUSES = ("open", "acknowledged", "resolved")
RESOLUTIONS = ("auto", "recovered", "manual", "false_positive")
MAX_STORED_VALUE = 16384  # label/annotation values longer than this are clipped when read
MAX_NAME_CHARS = 1024
CLIPPED = "…[truncated]"


SEVERITIES = ("info", "warning", "error", "critical")
SEVERITY_ALIASES = {"page": "critical", "crit": "critical", "high": "error", "warn": "warning"}


# The severity a `severity` label value means (None: none), by the label's raw value: a poll
# asks for the same few values thousands of times.
_SEVERITY_OF_LABEL: dict[str, str | None] = {}


def alert_severity(labels: Mapping[str, str], default: str) -> str:
    """An alert's own severity: its `severity` label (case-insensitive; `page`, `crit` mean
    critical, `high` error, `warn` warning), else `default`."""
    raw = labels.get("severity", "")
    try:
        known = _SEVERITY_OF_LABEL[raw]
    except KeyError:
        label = raw.strip().lower()
        label = SEVERITY_ALIASES.get(label, label)
        known = label if label in SEVERITIES else None
        if len(_SEVERITY_OF_LABEL) < 1024:
            _SEVERITY_OF_LABEL[raw] = known
    return known or default


def incident_name(labels: Mapping[str, str], rule: str) -> str:
    """What every view names and counts an incident by: the `alertname` its alerts share, else
    (a rule grouping several alert names) the rule's name."""
    return labels.get("alertname") or rule


def clip_value(value: str) -> str:
    """A label or annotation value as it is matched and stored: at most MAX_STORED_VALUE
    characters, marked when cut. Clipping a clipped value changes nothing."""
    return value if len(value) <= MAX_STORED_VALUE else value[:MAX_STORED_VALUE] + CLIPPED


def clip_values(values: Mapping[str, str]) -> dict[str, str]:
    return {k[:MAX_NAME_CHARS]: clip_value(v) for k, v in values.items()}


@dataclass(frozen=True)
class Alert:
    """One alert as a source reported it. `state` is firing, pending or suppressed."""

    source: str
    fingerprint: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    state: str
    starts_at: float | None = None
    generator_url: str | None = None
    # The alert expression's current value, when the source reports one (Prometheus does; it
    # changes every evaluation, so it takes no part in comparing alerts).
    value: float | None = field(default=None, compare=False)

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "")


@dataclass(frozen=True)
class Incident:
    """One incident as stored: its identity, state and timestamps."""

    id: int
    key: str
    title: str
    status: str
    severity: str
    rule: str
    handler: str
    source: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    started_at: float | None
    opened_at: float
    acknowledged_at: float | None = None
    acknowledged_by: str | None = None
    resolved_at: float | None = None
    resolution: str | None = None
    flapping: bool = False
    reopen_count: int = 0
    last_seen_at: float | None = None
    absent_polls: int = 0
    fixed_at: float | None = None
    escalated_at: float | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Incident:
        return cls(
            id=row["id"],
            key=row["key"],
            title=row["title"],
            status=row["status"],
            severity=row["severity"],
            rule=row["rule"],
            handler=row["handler"],
            source=row["source"],
            labels=json.loads(row["labels"]),
            annotations=json.loads(row["annotations"]),
            started_at=row["started_at"],
            opened_at=row["opened_at"],
            acknowledged_at=row["acknowledged_at"],
            acknowledged_by=row["acknowledged_by"],
            resolved_at=row["resolved_at"],
            resolution=row["resolution"],
            flapping=bool(row["flapping"]),
            reopen_count=row["reopen_count"],
            last_seen_at=row["last_seen_at"],
            absent_polls=row["absent_polls"],
            fixed_at=row["fixed_at"],
            escalated_at=row["escalated_at"],
        )

    def to_json(self) -> dict[str, Any]:
        """The incident's JSON exactly as docs/commands.md#incident-json shows it."""
        return {
            "id": self.id,
            "key": self.key,
            "title": self.title,
            "status": self.status,
            "severity": self.severity,
            "rule": self.rule,
            "handler": self.handler,
            "source": self.source,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "started_at": to_rfc3339(self.started_at),
            "opened_at": to_rfc3339(self.opened_at),
            "acknowledged_at": to_rfc3339(self.acknowledged_at),
            "resolved_at": to_rfc3339(self.resolved_at),
            "resolution": self.resolution,
            "flapping": self.flapping,
            "reopen_count": self.reopen_count,
        }


@dataclass(frozen=True)
class ActionPlan:
    """What a handler asks for; `recover` carries it out.

    kind: command | diagnostics | block_ip | escalate. `command` is the argv before label
    substitution. `params` is JSON-able detail (verify, queries, ip, reason, ...).
    """

    kind: str
    command: tuple[str, ...] | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    target: str | None = None
    delay: float = 0.0


@dataclass(frozen=True)
class OutboxRow:
    """One pending notification as delivery and the dry run see it."""

    id: int
    incident_id: int | None
    channel: str
    event: str
    message: str
    created_at: float
    next_attempt_at: float
    lease_until: float | None
    attempts: int
