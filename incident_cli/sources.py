"""Reading alerts from Prometheus (`/api/v1/alerts`) and Alertmanager (`/api/v2/alerts`)."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
import time
from collections.abc import Mapping
from typing import Any

import requests
import urllib3

from incident_cli.config import SourceConfig
from incident_cli.errors import SourceError
from incident_cli.models import Alert
from incident_cli.times import parse_rfc3339

MAX_BODY_BYTES = 128 * 1024 * 1024
USER_AGENT = "incident-cli"


def fingerprint(labels: Mapping[str, str]) -> str:
    """A stable identity for an alert: a hash of its sorted labels.

    Separators are control characters that cannot be confused with label text boundaries
    (names are [a-zA-Z_][a-zA-Z0-9_]*), so distinct label sets give distinct inputs.
    """
    canonical = "\x1e".join([f"{k}\x1f{v}" for k, v in sorted(labels.items())])
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def describe_request_error(exc: BaseException) -> str:
    """A short reason that never includes the URL (which may carry credentials)."""
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS error"
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return "connection timed out"
    if isinstance(exc, requests.exceptions.Timeout):
        return "timed out"
    if isinstance(exc, requests.exceptions.ConnectionError):
        text = str(exc).lower()
        if "refused" in text:
            return "connection refused"
        if "name or service not known" in text or "nodename nor servname" in text:
            return "host not found"
        return "connection failed"
    return exc.__class__.__name__


def http_get_json(
    session: requests.Session,
    url: str,
    *,
    timeout: float,
    what: str,
    params: Mapping[str, str] | None = None,
    auth: tuple[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    verify: bool | str = True,
) -> Any:
    """GET a JSON document with a total deadline (a server that drips bytes cannot hang a tick)."""
    deadline = time.monotonic() + timeout
    try:
        with session.get(
            url,
            params=params,
            auth=auth,
            headers={"Accept": "application/json", "User-Agent": USER_AGENT, **(headers or {})},
            timeout=(min(timeout, 10.0), timeout),
            verify=verify,
            stream=True,
            allow_redirects=False,
        ) as response:
            if not 200 <= response.status_code < 300:
                raise SourceError(f"{what}: HTTP {response.status_code}")
            chunks: list[bytes] = []
            size = 0
            # read1 returns whatever has arrived, so a server that drips bytes meets the
            # deadline within one socket timeout instead of holding the tick hostage.
            while True:
                chunk = response.raw.read1(65536, decode_content=True)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    raise SourceError(f"{what}: response larger than {MAX_BODY_BYTES >> 20} MiB")
                if time.monotonic() > deadline:
                    raise SourceError(f"{what}: timed out after {timeout:g}s")
    except requests.exceptions.RequestException as exc:
        raise SourceError(f"{what}: {describe_request_error(exc)}") from None
    except urllib3.exceptions.ReadTimeoutError:
        raise SourceError(f"{what}: timed out after {timeout:g}s") from None
    except urllib3.exceptions.DecodeError:
        raise SourceError(f"{what}: answered with a body that cannot be decoded") from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        # raw reads are not wrapped by requests: a connection cut mid-body lands here
        raise SourceError(
            f"{what}: connection broke while reading ({exc.__class__.__name__})"
        ) from None
    try:
        return json.loads(b"".join(chunks))
    except (ValueError, UnicodeDecodeError):
        raise SourceError(f"{what}: answered with a body that is not JSON") from None
    except RecursionError:
        raise SourceError(f"{what}: answered with JSON nested too deeply") from None


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
        # One pass, and no regex for ASCII text (nearly every label): an ASCII string holds no
        # surrogate, and str.isascii() reads a flag rather than the text.
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

    if not isinstance(value, str | int | float) or isinstance(value, bool):
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


def fetch_alerts(source: SourceConfig, session: requests.Session | None = None) -> list[Alert]:
    """All alerts a source reports now (every state). Raises SourceError; changes nothing."""
    session = session or requests.Session()
    if source.type == "prometheus":
        url, parse = f"{source.url}/api/v1/alerts", parse_prometheus
    else:
        url, parse = f"{source.url}/api/v2/alerts", parse_alertmanager
    headers = {"Authorization": f"Bearer {source.bearer_token}"} if source.bearer_token else None
    if source.username:
        # requests encodes basic auth as Latin-1; RFC 7617 says UTF-8.
        token = base64.b64encode(f"{source.username}:{source.password or ''}".encode()).decode()
        headers = {**(headers or {}), "Authorization": f"Basic {token}"}
    verify: bool | str = source.ca_file or True
    if source.insecure_skip_verify:
        verify = False
        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    body = http_get_json(
        session,
        url,
        timeout=source.timeout,
        what=f"source {source.name}",
        headers=headers,
        verify=verify,
    )
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
