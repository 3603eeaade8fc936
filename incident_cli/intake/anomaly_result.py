"""What one `detect-anomalies` run found: the result the stage reports, apart from the checks
(intake/anomaly.py), so that a tick with no journey to look at need not import them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from incident_cli.intake.anomaly import JourneyOutcome


@dataclass(frozen=True)
class FileReport:
    """What one run read from the journeys file."""

    path: str
    lines: int
    stored: int  # new results (lines already stored, e.g. after a re-read, are not)
    skipped: int
    first_problem: str | None
    reset: bool
    more: bool  # stopped at the per-tick read limit; the rest comes next tick


@dataclass
class DetectResult:
    """What one `detect-anomalies` run did: incidents changed, journeys, the file."""

    journeys: list[JourneyOutcome] = field(default_factory=list)
    opened: list[int] = field(default_factory=list)
    reopened: list[int] = field(default_factory=list)
    changed: list[int] = field(default_factory=list)
    resolved: list[int] = field(default_factory=list)
    file: FileReport | None = None
    file_error: str | None = None
    dry_run: bool = False

    def to_json(self) -> dict[str, Any]:
        f = self.file
        return {
            "opened": self.opened,
            "reopened": self.reopened,
            "changed": self.changed,
            "resolved": self.resolved,
            "journeys": [o.to_json() for o in self.journeys],
            "file": None
            if f is None
            else {
                "path": f.path,
                "lines": f.lines,
                "stored": f.stored,
                "skipped": f.skipped,
                "first_problem": f.first_problem,
                "reset": f.reset,
                "more": f.more,
            },
            "file_error": self.file_error,
            "dry_run": self.dry_run,
        }
