"""The `channels:` section: each channel's options, checked against its kind."""

from __future__ import annotations

import re
from typing import Any

from incident_cli.config import defaults as d
from incident_cli.config.model import ChannelConfig
from incident_cli.config.reader import Reader, describe
from incident_cli.config.sections import read_severity
from incident_cli.config.yamlraw import Raw, Scalar

CHANNEL_TYPES = ("slack", "pagerduty", "statuspage", "email", "webhook")

PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"

STATUSPAGE_API_URL = "https://api.statuspage.io/v1"

_CHANNEL_KEYS: dict[str, tuple[str, ...]] = {
    "slack": ("webhook_url", "channel", "username"),
    "pagerduty": ("routing_key", "url", "source"),
    "statuspage": (
        "page_id",
        "api_key",
        "api_url",
        "components",
        "component_label",
        "name_template",
    ),
    "email": ("host", "port", "starttls", "tls", "username", "password", "from", "to"),
    "webhook": ("url", "headers"),
}

# The key whose empty value disables the channel, and the keys that are secrets.
_CHANNEL_REQUIRED: dict[str, tuple[str, ...]] = {
    "slack": ("webhook_url",),
    "pagerduty": ("routing_key",),
    "statuspage": ("page_id", "api_key"),
    "email": ("host", "from", "to"),
    "webhook": ("url",),
}

_CHANNEL_SECRETS: dict[str, tuple[str, ...]] = {
    "slack": ("webhook_url",),
    "pagerduty": ("routing_key",),
    "statuspage": ("api_key",),
    "email": ("password",),
    "webhook": ("url",),
}

_COMMON_CHANNEL_KEYS = ("type", "min_severity", "timeout", "rate_limit")


def read_rate_limit(r: Reader, path: str, raw: Raw | None) -> float | None:
    value = r.opt_text(path, raw)
    if value is None:
        return None
    value = value.strip().lower()
    if value in ("off", "0", "none", "false"):
        return 0.0
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*/\s*(s|m|h)", value)
    if not m:
        raise r.fail(path, f"expected a rate like 1/s or 120/m, or off; got {value!r}")
    return float(m.group(1)) / {"s": 1.0, "m": 60.0, "h": 3600.0}[m.group(2)]


def read_channels(r: Reader, raw: Raw | None) -> dict[str, ChannelConfig]:
    out: dict[str, ChannelConfig] = {}
    for name, item in r.free_mapping("channels", raw).items():
        path = f"channels.{name}"
        if not isinstance(item, dict):
            raise r.fail(path, f"expected a mapping, got {describe(item)}")
        kind = r.text(f"{path}.type", item.get("type"))
        if kind not in CHANNEL_TYPES:
            raise r.fail(
                f"{path}.type",
                f"unknown channel type {kind!r} (known: {', '.join(CHANNEL_TYPES)})",
            )
        secrets = _CHANNEL_SECRETS[kind]
        allowed = _COMMON_CHANNEL_KEYS + _CHANNEL_KEYS[kind] + tuple(f"{k}_file" for k in secrets)
        s = r.mapping(path, item, allowed)
        options: dict[str, Any] = {}
        for key in _CHANNEL_KEYS[kind]:
            sub = f"{path}.{key}"
            if key in secrets:
                options[key] = r.secret(path, s, key)
            elif key in ("starttls", "tls"):
                options[key] = r.boolean(sub, s.get(key), False)
            elif key == "port":
                options[key] = r.integer(sub, s.get(key), 0, minimum=0)
            elif key == "to":
                to = s.get(key)
                options[key] = (r.text(sub, to),) if isinstance(to, Scalar) else r.texts(sub, to)
                options[key] = tuple(a for a in options[key] if a)
            elif key in ("components", "headers"):
                mapping = r.free_mapping(sub, s.get(key))
                options[key] = {k: r.text(f"{sub}.{k}", v) for k, v in mapping.items()}
            else:
                options[key] = r.opt_text(sub, s.get(key))
        if kind == "pagerduty":
            options["url"] = options.get("url") or PAGERDUTY_EVENTS_URL
        if kind == "statuspage":
            options["api_url"] = (options.get("api_url") or STATUSPAGE_API_URL).rstrip("/")
            options["component_label"] = options.get("component_label") or "service"
            _check_name_template(r, f"{path}.name_template", options.get("name_template"))
        if kind == "email":
            if options["tls"] and options["starttls"]:
                raise r.fail(path, "choose one of tls (implicit TLS) and starttls")
            if not options["port"]:
                options["port"] = 465 if options["tls"] else (587 if options["starttls"] else 25)
        missing = [k for k in _CHANNEL_REQUIRED[kind] if not options.get(k)]
        for key in ("url", "webhook_url", "api_url"):
            value = options.get(key)
            if value and not re.match(r"^https?://[^\s/]+", str(value)):
                raise r.fail(f"{path}.{key}", "expected an http:// or https:// URL")
        out[name] = ChannelConfig(
            name=name,
            type=kind,
            enabled=not missing,
            options=options,
            min_severity=read_severity(r, f"{path}.min_severity", s.get("min_severity")),
            timeout=r.duration(f"{path}.timeout", s.get("timeout"), d.CHANNEL_TIMEOUT),
            rate_limit=read_rate_limit(r, f"{path}.rate_limit", s.get("rate_limit")),
            disabled_reason=f"{', '.join(missing)} is empty" if missing else None,
            secret_keys=secrets,
        )
    return out


def _check_name_template(r: Reader, path: str, template: str | None) -> None:
    from string import Formatter

    from incident_cli.notify.channels.statuspage import NAME_FIELDS

    if template is None:
        return
    try:
        fields = [f for _, f, spec, conv in Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise r.fail(path, f"bad template: {exc}") from None
    for name in fields:
        if name not in NAME_FIELDS:
            raise r.fail(path, f"unknown field {{{name}}} (known: {', '.join(NAME_FIELDS)})")
