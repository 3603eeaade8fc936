"""Reading alerts from Prometheus (`/api/v1/alerts`) and Alertmanager (`/api/v2/alerts`)."""

from __future__ import annotations

import functools
import json
import json.scanner
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from incident_cli.config.model import SourceConfig
from incident_cli.errors import SourceError
from incident_cli.http import Credentials, HTTPFailure, exchange
from incident_cli.models import MAX_NAME_CHARS, MAX_STORED_VALUE, Alert, clip_value
from incident_cli.times import parse_rfc3339

if TYPE_CHECKING:
    import requests

MAX_BODY_BYTES = 128 * 1024 * 1024
# An answer of at most this many bytes per allowed alert is parsed in one go (C, fast); a
# bigger one item by item, stopping at the cap. Either way memory follows the cap.
WHOLE_PARSE_BYTES = 64


def fingerprint(labels: Mapping[str, str]) -> str:
    """A stable identity for an alert: a hash of its sorted labels.

    Separators are control characters that cannot be confused with label text boundaries
    (names are [a-zA-Z_][a-zA-Z0-9_]*), so distinct label sets give distinct inputs.
    """
    canonical = "\x1e".join([f"{k}\x1f{v}" for k, v in sorted(labels.items())])
    import hashlib  # OpenSSL's: not for a poll that sees no alert

    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def get_json(
    source: SourceConfig,
    path: str,
    *,
    timeout: float,
    what: str,
    params: Mapping[str, str] | None = None,
    session: requests.Session | None = None,
) -> str:
    """GET a JSON document from a source with its credentials and TLS settings, all of it
    within `timeout` seconds. Returns its text (the raw body is let go at once: an answer near
    the size cap is not held twice); raises SourceError."""
    try:
        reply = exchange(
            "GET",
            f"{source.url}{path}",
            timeout=timeout,
            session=session,
            params=params,
            headers={"Accept": "application/json"},
            credentials=credentials(source),
            ca_file=source.ca_file,
            insecure_skip_verify=source.insecure_skip_verify,
            body_limit=MAX_BODY_BYTES,
            over_limit="fail",
        )
    except HTTPFailure as exc:
        raise SourceError(f"{what}: {exc.reason}") from None
    if not reply.ok:
        raise SourceError(f"{what}: HTTP {reply.status}")
    try:
        # utf-8-sig (one leading BOM dropped), without importing that codec's module
        return reply.body.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        raise SourceError(f"{what}: answered with a body that is not JSON") from None


def credentials(source: SourceConfig) -> Credentials:
    """The source's basic auth or bearer token, as every request to it sends them."""
    return Credentials(source.username, source.password, source.bearer_token)


def prometheus_query(source: SourceConfig, query: str, timeout: float) -> Any:
    """One PromQL instant query on a Prometheus source, within `timeout` (and the source's own):
    the `data` of its answer. Raises SourceError."""
    what = f"query on {source.name}"
    text = get_json(
        source,
        "/api/v1/query",
        timeout=min(source.timeout, timeout),
        what=what,
        params={"query": query},
    )
    body = load_json(text, what)
    if not isinstance(body, dict) or body.get("status") != "success":
        error = body.get("error") if isinstance(body, dict) else None
        raise SourceError(f"query failed: {str(error or 'bad answer')[:300]}")
    return body.get("data")


def load_json(
    text: str, what: str, *, list_at: tuple[str, ...] = (), cap: int | None = None
) -> Any:
    """The text as JSON. With `cap`, the list at `list_at` (keys down from the top) may hold at
    most `cap` items: parsing stops at the first one past it, so memory stays in proportion to
    the cap rather than to what the peer sent."""
    try:
        if cap is None or len(text) <= cap * WHOLE_PARSE_BYTES:
            # Small enough that parsing it all, in C, costs memory in proportion to the cap.
            value = json.loads(text)
            if cap is not None:
                _count(value, list_at, cap, what)
            return value
        value, end = _value_at(text, _skip(text, 0), list_at, cap, what)
        if _skip(text, end) != len(text):
            raise ValueError("extra data")
        return value
    except ValueError:
        raise SourceError(f"{what}: answered with a body that is not JSON") from None
    except RecursionError:
        raise SourceError(f"{what}: answered with JSON nested too deeply") from None


def _count(value: Any, list_at: tuple[str, ...], cap: int, what: str) -> None:
    for key in list_at:
        value = value.get(key) if isinstance(value, dict) else None
    if isinstance(value, list) and len(value) > cap:
        raise _too_many(what, cap)


def _too_many(what: str, cap: int) -> SourceError:
    return SourceError(f"{what}: more than {cap} alerts (its max_alerts); none were read")


_decode = json.JSONDecoder().raw_decode
_scan_once = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_SPACE = frozenset(" \t\n\r")


def _skip(text: str, pos: int) -> int:
    match = _WHITESPACE.match(text, pos)
    return match.end() if match else pos


def _value_at(text: str, pos: int, path: tuple[str, ...], cap: int, what: str) -> tuple[Any, int]:
    """Decode the value at `pos`; walk objects down `path` key by key and count the list there."""
    if not path:
        if text.startswith("[", pos):
            return _capped_list(text, pos, cap, what)
        return _decode(text, pos)
    if not text.startswith("{", pos):
        return _decode(text, pos)  # another shape: the parser names it
    out: dict[str, Any] = {}
    pos = _skip(text, pos + 1)
    if text.startswith("}", pos):
        return out, pos + 1
    while True:
        key, pos = _decode(text, pos)
        pos = _skip(text, pos)
        if not isinstance(key, str) or not text.startswith(":", pos):
            raise ValueError("not an object")
        pos = _skip(text, pos + 1)
        if key == path[0]:
            out[key], pos = _value_at(text, pos, path[1:], cap, what)
        else:
            out[key], pos = _decode(text, pos)
        pos = _skip(text, pos)
        if text.startswith(",", pos):
            pos = _skip(text, pos + 1)
        elif text.startswith("}", pos):
            return out, pos + 1
        else:
            raise ValueError("not an object")


def _capped_list(text: str, pos: int, cap: int, what: str) -> tuple[list[Any], int]:
    # The hot loop of a big poll: the C scanner per item, and the whitespace regex only where
    # there is whitespace (Prometheus and Alertmanager send none).
    items: list[Any] = []
    append, scan, space = items.append, _scan_once, _WHITESPACE.match
    pos = _skip(text, pos + 1)
    if text.startswith("]", pos):
        return items, pos + 1
    while True:
        if len(items) >= cap:
            raise _too_many(what, cap)
        try:
            item, pos = scan(text, pos)
        except StopIteration:
            raise ValueError("not a list") from None
        append(item)
        after = text[pos : pos + 1]
        if after in _SPACE:
            pos = _skip(text, pos)
            after = text[pos : pos + 1]
        if after == ",":
            pos += 1
            if text[pos : pos + 1] in _SPACE:
                pos = space(text, pos).end()  # type: ignore[union-attr]
        elif after == "]":
            return items, pos + 1
        else:
            raise ValueError("not a list")


_SURROGATE = re.compile("[\ud800-\udfff]")
_HEX = re.compile(r"[0-9a-fA-F]{1,64}")


def _clean(text: str) -> str:
    # JSON may carry lone surrogates (\ud800) that cannot be stored as UTF-8.
    return _SURROGATE.sub("\ufffd", text) if _SURROGATE.search(text) else text


def _string_map(value: Any, what: str, field: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SourceError(f"{what}: unexpected shape: {field} is not a map of strings")
    out: dict[str, str] = {}
    for k, v in value.items():
        if not (isinstance(k, str) and isinstance(v, str)):
            raise SourceError(f"{what}: unexpected shape: {field} is not a map of strings")
        # Clipped here, once, to what is stored: rules match what is stored, and a regex
        # never meets a megabyte. One pass, and no regex for ASCII text (nearly every
        # label): an ASCII string holds no surrogate, and str.isascii() reads a flag.
        if len(v) > MAX_STORED_VALUE:
            v = clip_value(v)
        if len(k) > MAX_NAME_CHARS:
            k = k[:MAX_NAME_CHARS]
        out[k if k.isascii() else _clean(k)] = v if v.isascii() else _clean(v)
    return out


def _time(value: Any) -> float | None:
    if not isinstance(value, str) or not value or value.startswith("0001-01-01"):
        return None
    return _cached_time(value)


@functools.lru_cache(maxsize=4096)
def _cached_time(value: str) -> float | None:
    # Alerts of one rule evaluation share their timestamp: parse each distinct one once.
    try:
        return parse_rfc3339(value)
    except ValueError:
        return None


def _value(value: Any) -> float | None:
    """Prometheus gives an alert's value as a string ("1.5e+01"); NaN and infinities are none."""
    import math

    if type(value) is not str and (
        not isinstance(value, (str, int, float)) or isinstance(value, bool)
    ):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def parse_prometheus(name: str, body: Any) -> list[Alert]:
    what = f"source {name}"
    if not isinstance(body, dict) or body.get("status") != "success":
        raise SourceError(f"{what}: unexpected shape: status is not 'success'")
    data = body.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("alerts"), list):
        raise SourceError(f"{what}: unexpected shape: no data.alerts list")
    alerts = []
    for item in data["alerts"]:
        if not isinstance(item, dict):
            raise SourceError(f"{what}: unexpected shape: an alert is not an object")
        labels = _string_map(item.get("labels"), what, "labels")
        state = item.get("state")
        if state not in ("firing", "pending", "inactive"):
            raise SourceError(f"{what}: unexpected shape: alert state {str(state)[:40]!r}")
        alerts.append(
            Alert(
                source=name,
                fingerprint=fingerprint(labels),
                labels=labels,
                annotations=_string_map(item.get("annotations"), what, "annotations"),
                state=state,
                starts_at=_time(item.get("activeAt")),
                value=_value(item.get("value")),
            )
        )
    return alerts


def parse_alertmanager(name: str, body: Any) -> list[Alert]:
    what = f"source {name}"
    if not isinstance(body, list):
        raise SourceError(f"{what}: unexpected shape: expected a list of alerts")
    alerts = []
    for item in body:
        if not isinstance(item, dict) or not isinstance(item.get("status"), dict):
            raise SourceError(f"{what}: unexpected shape: an alert has no status object")
        labels = _string_map(item.get("labels"), what, "labels")
        am_state = item["status"].get("state")
        # unprocessed: Alertmanager has not yet decided whether it is inhibited or silenced.
        state = {"active": "firing", "suppressed": "suppressed", "unprocessed": "suppressed"}.get(
            am_state if isinstance(am_state, str) else ""
        )
        if state is None:
            raise SourceError(f"{what}: unexpected shape: alert state {str(am_state)[:40]!r}")
        fp = item.get("fingerprint")
        generator = item.get("generatorURL")
        alerts.append(
            Alert(
                source=name,
                # Alertmanager's fingerprint is 16 hex digits; anything else is recomputed.
                fingerprint=fp
                if isinstance(fp, str) and _HEX.fullmatch(fp)
                else fingerprint(labels),
                labels=labels,
                annotations=_string_map(item.get("annotations"), what, "annotations"),
                state=state,
                starts_at=_time(item.get("startsAt")),
                generator_url=_clean(generator[:2048]) if isinstance(generator, str) else None,
            )
        )
    return alerts


def fetch_alerts(
    source: SourceConfig,
    session: requests.Session | None = None,
    *,
    timeout: float | None = None,
) -> list[Alert]:
    """All alerts a source reports now (every state), read within `timeout` (default: the
    source's own). Raises SourceError; changes nothing."""
    what = f"source {source.name}"
    list_at: tuple[str, ...]
    if source.type == "prometheus":
        path, list_at, parse = "/api/v1/alerts", ("data", "alerts"), parse_prometheus
    else:
        path, list_at, parse = "/api/v2/alerts", (), parse_alertmanager
    budget = source.timeout if timeout is None else timeout
    text = get_json(source, path, timeout=budget, what=what, session=session)
    body = load_json(text, what, list_at=list_at, cap=source.max_alerts)
    del text
    alerts = parse(source.name, body)
    if source.require_alert:
        sentinel = source.require_alert
        if not any(a.name == sentinel and a.state != "pending" for a in alerts):
            raise SourceError(
                f"source {source.name}: the sentinel alert {sentinel} is missing "
                "(the alerting pipeline may be broken)"
            )
        alerts = [a for a in alerts if a.name != sentinel]
    return alerts


# Which of two replicas' views of one alert wins: an alert active on any replica is active.
_STATE_RANK = {"firing": 3, "suppressed": 2, "pending": 1, "inactive": 0}


def merge_replicas(answers: Sequence[list[Alert]]) -> list[Alert]:
    """The alerts of one source's replicas as one answer, each alert once (by fingerprint:
    Alertmanager's own, or the label set's for Prometheus).

    An alert takes the most active state any replica reports (firing, then suppressed, then
    pending) with that replica's annotations and value, and the earliest start any replica
    gives. The alerts keep the order in which they are first seen."""
    if len(answers) == 1:
        return answers[0]
    merged: dict[str, Alert] = {}
    for alerts in answers:
        for alert in alerts:
            seen = merged.get(alert.fingerprint)
            if seen is None:
                merged[alert.fingerprint] = alert
                continue
            best = alert if _STATE_RANK[alert.state] > _STATE_RANK[seen.state] else seen
            starts = [t for t in (seen.starts_at, alert.starts_at) if t is not None]
            merged[alert.fingerprint] = replace(
                best,
                starts_at=min(starts) if starts else None,
                generator_url=best.generator_url or seen.generator_url or alert.generator_url,
            )
    return list(merged.values())
