"""What one poll did: the incidents it opened, reopened and resolved, and how its sources fared."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class PollResult:
    """What one poll changed: incidents opened, reopened, resolved, and each source's state."""

    opened: list[int] = field(default_factory=list)
    reopened: list[int] = field(default_factory=list)
    resolved: list[int] = field(default_factory=list)
    updated: int = 0
    storm: bool = False
    # Incidents whose clears the mass-resolve guard started holding in this poll.
    held: list[int] = field(default_factory=list)
    failed_sources: dict[str, str] = field(default_factory=dict)
    alerts_seen: int = 0
    # Sources whose failure is the first in a row, and sources that answer again after
    # failing: what a tick prints about its sources (cron mails every line).
    new_failures: list[str] = field(default_factory=list)
    recovered_sources: list[str] = field(default_factory=list)
    # For a source with replicas, while it is up: each failed replica's error by source and
    # URL, and the (source, URL) pairs whose failure is new and that answer again.
    failed_replicas: dict[str, dict[str, str]] = field(default_factory=dict)
    new_replica_failures: list[tuple[str, str]] = field(default_factory=list)
    recovered_replicas: list[tuple[str, str]] = field(default_factory=list)
