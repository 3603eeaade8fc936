"""Diagnostics: PromQL queries through a Prometheus source, results cut down for the timeline."""

from __future__ import annotations

import json
from typing import Any

from incident_cli.config.model import Config, SourceConfig

MAX_QUERY_RESULT_CHARS = 4096  # one PromQL result attached to the timeline

MAX_QUERY_SERIES = 20


def prometheus_source(config: Config, name: str | None) -> SourceConfig | None:
    if name:
        return config.sources.get(name)
    return next((s for s in config.sources.values() if s.type == "prometheus"), None)


def bounded_result(data: Any) -> Any:
    """A PromQL result cut down to a few series and a few KiB, for the timeline."""
    if not isinstance(data, dict):
        return {"unexpected": str(data)[:200]}
    kind = data.get("resultType")
    result = data.get("result")
    if kind in ("vector", "matrix") and isinstance(result, list):
        series = []
        for item in result[:MAX_QUERY_SERIES]:
            if not isinstance(item, dict):
                continue
            entry: dict[str, Any] = {"metric": item.get("metric")}
            if kind == "vector":
                entry["value"] = item.get("value")
            else:
                values = item.get("values")
                entry["values"] = values[-5:] if isinstance(values, list) else None
            series.append(entry)
        out: dict[str, Any] = {"result_type": kind, "series": series, "total": len(result)}
        while len(json.dumps(out, default=str)) > MAX_QUERY_RESULT_CHARS and out["series"]:
            out["series"] = out["series"][: len(out["series"]) // 2]
        return out
    return {"result_type": kind, "value": str(result)[:MAX_QUERY_RESULT_CHARS]}


def run_query(source: SourceConfig, query: str, timeout: float) -> dict[str, Any]:
    """One PromQL instant query: {"query", "result"} or {"query", "error"}. Never raises."""
    from incident_cli.errors import SourceError
    from incident_cli.intake.sources import prometheus_query

    try:
        data = prometheus_query(source, query, timeout)
    except SourceError as exc:
        return {"query": query, "error": exc.message}
    return {"query": query, "result": bounded_result(data)}
