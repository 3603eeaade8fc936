"""`incident replay` from end to end: the window, the history of each source, one engine per
config fed in step, and what could not be replayed."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from incident_cli.config.model import Config
from incident_cli.errors import ConfigError, UsageError
from incident_cli.replay.engine import Replay, replay
from incident_cli.replay.history import History, Window, history_sources

# 7 days at 1 s; anything longer is a step chosen by mistake.
MAX_TICKS = 1_000_000


@dataclass(frozen=True)
class ReplayRun:
    results: list[Replay]
    notes: list[str]  # sources that could not be replayed, and why
    queries: int
    series: int


def make_window(since: float, until: float, step: float) -> Window:
    if step <= 0:
        raise UsageError("--step must be more than 0s")
    if until <= since:
        raise UsageError("--until must be later than --since")
    window = Window(since, until, step)
    if window.ticks > MAX_TICKS:
        raise UsageError(
            f"{window.ticks} ticks is too many (at most {MAX_TICKS}): use a longer --step"
        )
    return window


def run_replay(
    configs: Sequence[Config], window: Window, say: Callable[[str], None] | None = None
) -> ReplayRun:
    """Read the history through the first config's sources and replay every config over it.
    Nothing is sent and no command runs; the state DB is not touched. `say` hears, before the
    replay starts, of each source that cannot be replayed."""
    sources, notes = history_sources(configs[0])
    for note in notes:
        if say is not None:
            say(note)
    if not sources:
        raise ConfigError(
            configs[0].path,
            "sources",
            "no source has a history to replay (an Alertmanager source needs history_url)",
        )
    history = History(sources, window)
    results = replay(list(configs), window, history.ticks())
    return ReplayRun(results, notes, history.queries, history.series_seen)
