"""The `channels:` section: each channel's options, checked against its kind."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from incident_cli.config import defaults as d
from incident_cli.config.model import ChannelConfig
from incident_cli.config.reader import Reader, describe
from incident_cli.config.sections import read_severity
from incident_cli.config.yamlraw import Raw, Scalar

if TYPE_CHECKING:
    from incident_cli.notify.channels.options import FieldSpec

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
    from incident_cli.notify.channels.registry import KINDS, options_class

    out: dict[str, ChannelConfig] = {}
    for name, item in r.free_mapping("channels", raw).items():
        path = f"channels.{name}"
        if not isinstance(item, dict):
            raise r.fail(path, f"expected a mapping, got {describe(item)}")
        kind = r.text(f"{path}.type", item.get("type"))
        if kind not in KINDS:
            raise r.fail(
                f"{path}.type", f"unknown channel type {kind!r} (known: {', '.join(KINDS)})"
            )
        cls = options_class(kind)
        specs = cls.specs()
        allowed = (
            _COMMON_CHANNEL_KEYS
            + tuple(spec.key for spec in specs)
            + tuple(f"{k}_file" for k in cls.secret_keys())
        )
        s = r.mapping(path, item, allowed)
        options = cls(**{spec.name: _read_option(r, path, s, spec) for spec in specs}).completed()
        problem = options.problem()
        if problem is not None:
            key, text = problem
            raise r.fail(f"{path}.{key}" if key else path, text)
        missing = options.missing()
        for spec in specs:
            value = getattr(options, spec.name)
            if spec.kind == "url" and value and not re.match(r"^https?://[^\s/]+", str(value)):
                raise r.fail(f"{path}.{spec.key}", "expected an http:// or https:// URL")
        out[name] = ChannelConfig(
            name=name,
            type=kind,
            enabled=not missing,
            options=options,
            min_severity=read_severity(r, f"{path}.min_severity", s.get("min_severity")),
            timeout=r.duration(f"{path}.timeout", s.get("timeout"), d.CHANNEL_TIMEOUT),
            rate_limit=read_rate_limit(r, f"{path}.rate_limit", s.get("rate_limit")),
            disabled_reason=f"{', '.join(missing)} is empty" if missing else None,
        )
    return out


def _read_option(r: Reader, path: str, section: dict[str, Raw], spec: FieldSpec) -> Any:
    """One option as its kind declares it."""
    sub = f"{path}.{spec.key}"
    raw = section.get(spec.key)
    match spec.kind:
        case "flag":
            return r.boolean(sub, raw, False)
        case "port":
            return r.integer(sub, raw, 0, minimum=0)
        case "addresses":
            to = (r.text(sub, raw),) if isinstance(raw, Scalar) else r.texts(sub, raw)
            return tuple(a for a in to if a)
        case "mapping":
            mapping = r.free_mapping(sub, raw)
            return {k: r.text(f"{sub}.{k}", v) for k, v in mapping.items()}
    value = r.secret(path, section, spec.key) if spec.secret else r.opt_text(sub, raw)
    if not value and spec.env and f"{spec.key}_file" not in section:
        value = r.env.get(spec.env) or None
    return value or spec.fallback if spec.fallback is not None else value
