"""Alert history for `incident replay`: each source's `ALERTS{alertstate="firing"}` series, read
from Prometheus with query_range in chunks and handed on one tick at a time."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from incident_cli.config.model import Config, SourceConfig
from incident_cli.errors import SourceError
from incident_cli.intake.sources import fingerprint, get_json, load_json
from incident_cli.models import Alert

QUERY = 'ALERTS{alertstate="firing"}'
# ALERTS' own labels, not the alert's.
_NOT_ALERT_LABELS = ("__name__", "alertstate")
# Samples held at once (one chunk of every source): what bounds replay's memory.
CHUNK_SAMPLES = 200_000
# Prometheus answers at most 11,000 points per series a query.
MAX_CHUNK_STEPS = 10_000
FIRST_CHUNK_STEPS = 360


@dataclass(frozen=True)
class Window:
    """The ticks of a replay: since, since + step, ... up to until."""

    since: float
    until: float
    step: float

    @property
    def ticks(self) -> int:
        return math.floor((self.until - self.since) / self.step + 1e-9) + 1

    def at(self, index: int) -> float:
        return self.since + index * self.step


def history_sources(config: Config) -> tuple[dict[str, SourceConfig], list[str]]:
    """The sources whose history can be read, each pointed at its history (`history_url`, else
    a Prometheus source's own URL), and one line for each source that has none."""
    readable: dict[str, SourceConfig] = {}
    missing: list[str] = []
    for name, source in config.sources.items():
        url = source.history_url or (source.url if source.type == "prometheus" else None)
        if url is None:
            missing.append(
                f"source {name}: an Alertmanager keeps no alert history; set"
                f" sources.{name}.history_url to the Prometheus behind it to replay it"
            )
            continue
        readable[name] = replace(source, url=url, urls=())
    return readable, missing


class History:
    """The firing alerts of every source at each tick of a window, read chunk by chunk (a chunk
    holds at most about CHUNK_SAMPLES samples, whatever the window)."""

    def __init__(self, sources: Mapping[str, SourceConfig], window: Window) -> None:
        self.sources = dict(sources)
        self.window = window
        # Per source, the alert of each series firing at the previous tick: one Alert object
        # per run of samples, its start the run's first tick (ALERTS carries no activeAt).
        self._running: dict[str, dict[str, tuple[int, Alert]]] = {n: {} for n in sources}
        self.series_seen = 0
        self.queries = 0

    def ticks(self) -> Iterator[tuple[float, dict[str, list[Alert]]]]:
        window = self.window
        steps = FIRST_CHUNK_STEPS
        first = 0
        while first < window.ticks:
            last = min(window.ticks - 1, first + steps - 1)
            chunk = {
                name: self._read(name, source, first, last) for name, source in self.sources.items()
            }
            series = sum(len(by_tick.series) for by_tick in chunk.values())
            for index in range(first, last + 1):
                yield (
                    window.at(index),
                    {name: by_tick.alerts.get(index, []) for name, by_tick in chunk.items()},
                )
            del chunk
            steps = max(1, min(MAX_CHUNK_STEPS, CHUNK_SAMPLES // max(series, 1)))
            first = last + 1

    def _read(self, name: str, source: SourceConfig, first: int, last: int) -> _Chunk:
        window = self.window
        what = f"history of source {name} ({source.url})"
        text = get_json(
            source,
            "/api/v1/query_range",
            timeout=source.timeout,
            what=what,
            params={
                "query": QUERY,
                "start": _number(window.at(first)),
                "end": _number(window.at(last)),
                "step": _number(window.step),
            },
        )
        self.queries += 1
        body = load_json(text, what)
        del text
        result = _matrix(body, what)
        chunk = _Chunk()
        running = self._running[name]
        still: dict[str, tuple[int, Alert]] = {}
        for item in result:
            labels = _labels(item, what)
            fp = fingerprint(labels)
            chunk.series.add(fp)
            previous = running.get(fp)
            for index in _indexes(item, what, window, first, last):
                if previous is None or previous[0] != index - 1:
                    alert = Alert(name, fp, labels, {}, "firing", window.at(index))
                else:
                    alert = previous[1]
                previous = (index, alert)
                chunk.alerts.setdefault(index, []).append(alert)
            if previous is not None and previous[0] == last:
                still[fp] = previous
        self._running[name] = still
        self.series_seen += len(chunk.series)
        return chunk


@dataclass
class _Chunk:
    alerts: dict[int, list[Alert]]
    series: set[str]

    def __init__(self) -> None:
        self.alerts = {}
        self.series = set()


def _number(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".")


def _matrix(body: Any, what: str) -> list[Any]:
    if not isinstance(body, dict) or body.get("status") != "success":
        error = body.get("error") if isinstance(body, dict) else None
        raise SourceError(f"{what}: query_range failed: {str(error or 'bad answer')[:300]}")
    data = body.get("data")
    if not isinstance(data, dict) or data.get("resultType") != "matrix":
        raise SourceError(f"{what}: unexpected shape: not a matrix")
    result = data.get("result")
    if not isinstance(result, list):
        raise SourceError(f"{what}: unexpected shape: no result list")
    return result


def _labels(item: Any, what: str) -> dict[str, str]:
    metric = item.get("metric") if isinstance(item, dict) else None
    if not isinstance(metric, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metric.items()
    ):
        raise SourceError(f"{what}: unexpected shape: a series has no label map")
    return {k: v for k, v in metric.items() if k not in _NOT_ALERT_LABELS}


def _indexes(item: Any, what: str, window: Window, first: int, last: int) -> Iterator[int]:
    values = item.get("values")
    if not isinstance(values, list):
        raise SourceError(f"{what}: unexpected shape: a series has no values")
    for pair in values:
        try:
            at = float(pair[0])
        except (TypeError, ValueError, IndexError):
            raise SourceError(f"{what}: unexpected shape: a sample is not [time, value]") from None
        index = round((at - window.since) / window.step)
        if first <= index <= last:
            yield index
