"""The effective configuration as the rule file spells it: defaults filled in, secrets masked,
and the environment variable behind every value that came from the environment."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from incident_cli.config.model import AppliedOverride, ChannelConfig, Config, Rule, SourceConfig
from incident_cli.redact import MASK, mask_userinfo, redact


def duration_text(seconds: float) -> str:
    """Seconds as the file writes a duration (`90s`, `5m`, `2h`, `1d`)."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def _drop_none(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None and v != {}}


def _source(source: SourceConfig) -> dict[str, Any]:
    auth = None
    if source.username:
        auth = {"username": source.username, "password": MASK if source.password else ""}
    return _drop_none(
        {
            "type": source.type,
            "url": None if source.urls else mask_userinfo(source.url),
            "urls": [mask_userinfo(url) for url in source.urls] or None,
            "timeout": duration_text(source.timeout),
            "basic_auth": auth,
            "bearer_token": MASK if source.bearer_token else None,
            "ca_file": source.ca_file,
            "insecure_skip_verify": source.insecure_skip_verify,
            "require_alert": source.require_alert,
            "max_alerts": source.max_alerts,
            "history_url": mask_userinfo(source.history_url) if source.history_url else None,
        }
    )


def _rule(rule: Rule) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": rule.name,
        "match": {m.label: m.value for m in rule.match},
        "handler": rule.handler,
        "severity": rule.severity,
        "group_by": list(rule.group_by) if rule.group_by is not None else None,
        "notify": list(rule.notify) if rule.notify is not None else None,
        "runbook": rule.runbook,
    }
    if rule.recovery is not None:
        rec = rule.recovery
        out["recovery"] = _drop_none(
            {
                "commands": [list(argv) for argv in rec.commands],
                "timeout": duration_text(rec.timeout) if rec.timeout is not None else None,
                "verify": _drop_none(
                    {"within": duration_text(rec.verify.within), "http": rec.verify.http}
                )
                if rec.verify
                else None,
                "max_attempts": rec.max_attempts,
                "backoff": duration_text(rec.backoff),
                "cooldown": duration_text(rec.cooldown),
                "approval": "required" if rec.approval else None,
                "approval_timeout": duration_text(rec.approval_timeout)
                if rec.approval_timeout is not None
                else None,
            }
        )
    if rule.diagnostics is not None:
        diag = rule.diagnostics
        out["diagnostics"] = _drop_none(
            {
                "commands": [list(argv) for argv in diag.commands],
                "queries": list(diag.queries),
                "source": diag.source,
                "timeout": duration_text(diag.timeout),
            }
        )
    if rule.security is not None:
        sec = rule.security
        out["security"] = _drop_none(
            {
                "ip_label": sec.ip_label,
                "block_command": list(sec.block_command) if sec.block_command else None,
                "min_value": sec.min_value,
                "value_annotation": sec.value_annotation,
            }
        )
    return _drop_none(out)


def _channel(channel: ChannelConfig) -> dict[str, Any]:
    out: dict[str, Any] = {"type": channel.type, "enabled": channel.enabled}
    out.update(channel.options.shown())
    out["min_severity"] = channel.min_severity
    out["timeout"] = duration_text(channel.timeout)
    if channel.rate_limit is not None:
        out["rate_limit"] = "off" if channel.rate_limit == 0 else f"{channel.rate_limit:g}/s"
    return _drop_none(out)


def _state(config: Config, db_path: str) -> dict[str, Any]:
    """The state DB, a URL's password masked; a password file's content is never shown."""
    from incident_cli.redact import MASK, mask_url

    out: dict[str, Any] = {"db": mask_url(db_path)}
    if config.db_password is not None:
        out["password_file"] = f"{MASK} (set)"
    return out


def effective_config(config: Config, db_path: str) -> dict[str, Any]:
    """Every key with the value in effect, in the file's shape, secrets masked."""
    inc, an, rec, sec = config.incidents, config.anomaly, config.recovery, config.security
    return {
        "sources": {name: _source(s) for name, s in config.sources.items()},
        "state": _state(config, db_path),
        "incidents": {
            "resolve_after": duration_text(inc.resolve_after),
            "reopen_within": duration_text(inc.reopen_within),
            "flapping": {
                "changes": inc.flapping_changes,
                "window": duration_text(inc.flapping_window),
            },
            "storm": {"max_new_per_tick": inc.storm_max_new_per_tick},
            "auto_resolve": inc.auto_resolve,
            "mass_resolve_guard": {
                "min_open": inc.mass_resolve_min_open,
                "max_fraction": inc.mass_resolve_max_fraction,
                "hold": duration_text(inc.mass_resolve_hold),
            },
        },
        "defaults": {"severity": config.defaults.severity, "notify": list(config.defaults.notify)},
        "rules": [_rule(rule) for rule in config.rules],
        "channels": {name: _channel(c) for name, c in config.channels.items()},
        "escalation": {"channels": list(config.escalation_channels)},
        "anomaly": _drop_none(
            {
                "journeys": an.journeys,
                "window": an.window,
                "fail_threshold": an.fail_threshold,
                "p95_factor": an.p95_factor,
                "consecutive_failures": an.consecutive_failures,
            }
        ),
        "recovery": {
            "enabled": rec.enabled,
            "max_concurrent": rec.max_concurrent,
            "timeout": duration_text(rec.default_timeout),
            "env_passthrough": list(rec.env_passthrough),
            "approval": "required" if rec.approval else "none",
            "approval_timeout": duration_text(rec.approval_timeout),
            "breaker": {
                "max_actions": rec.breaker.max_actions,
                "within": duration_text(rec.breaker.within),
                "max_incidents": rec.breaker.max_incidents,
                "auto_reset": rec.breaker.auto_reset,
            }
            if rec.breaker
            else False,
        },
        "security": {
            "auto_block": sec.auto_block,
            "auto_escalate": sec.auto_escalate,
            "never_block": [str(net) for net in sec.never_block],
            "max_blocks_per_tick": sec.max_blocks_per_tick,
        },
        "links": _drop_none({"grafana": config.grafana_url}),
        "log": {"file": config.log.file, "format": config.log.format} if config.log else {},
    }


def from_environment(config: Config, db_from: str | None = None) -> dict[str, list[str]]:
    """Key path → the environment variables its value came from.

    Both kinds: a `${VAR}` expanded in the file's text, and a behaviour variable that wins
    over the key. `db_from` names where an overriding state DB path came from (INCIDENT_DB).
    """
    out: dict[str, list[str]] = {}
    for path, variables in config.env_expanded.items():
        if path.endswith("_file"):  # `password_file: ${X}`: shown as the masked `password`
            path = path.removesuffix("_file")
        out.setdefault(path, []).extend(v for v in variables if v not in out.get(path, []))
    for override in config.env_overrides:
        out[override.key] = [override.variable]
    if db_from is not None:
        out["state.db"] = [db_from]
    return out


def override_text(override: AppliedOverride) -> str:
    """`VAR=value overrides key (instead of X)`, values as the file writes them."""
    replaced = override.replaced
    if override.key == "recovery.timeout":
        replaced = duration_text(float(replaced))
    if override.key == "recovery.approval":
        replaced = "required" if replaced else "none"
    return (
        f"{override.variable}={override.text} overrides {override.key}"
        f" (instead of {_scalar(replaced)})"
    )


# --------------------------------------------------------------------------- text

_PLAIN = re.compile(r"[A-Za-z0-9_./+-][A-Za-z0-9_./:@+=~(|)*, -]*")
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "~", "y", "n"}


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    text = str(value)
    plain = (
        _PLAIN.fullmatch(text)
        and not text.endswith((" ", ":", ","))
        and ": " not in text
        and text.lower() not in _YAML_WORDS
        and not re.fullmatch(r"[-+]?[0-9.e_]+", text)
    )
    return text if plain else json.dumps(text, ensure_ascii=False)


def _flow(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_scalar(k)}: {_flow(v)}" for k, v in value.items()) + "}"
    return _scalar(value)


def _marks(path: str, sources: Mapping[str, list[str]]) -> list[str]:
    found: list[str] = []
    for key, variables in sources.items():
        if key == path or key.startswith((f"{path}.", f"{path}[")):
            found.extend(v for v in variables if v not in found)
    return found


def _lines(
    data: Mapping[str, Any], path: str, indent: str, sources: Mapping[str, list[str]]
) -> list[str]:
    out: list[str] = []
    for key, value in data.items():
        sub = f"{path}.{key}" if path else str(key)
        name = _scalar(key)
        if isinstance(value, dict) and value:
            out.append(f"{indent}{name}:")
            out.extend(_lines(value, sub, indent + "  ", sources))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            out.append(f"{indent}{name}:")
            for i, item in enumerate(value):
                item_lines = _lines(item, f"{sub}[{i}]", indent + "    ", sources)
                item_lines[0] = f"{indent}  - {item_lines[0].lstrip()}"
                out.extend(item_lines)
        else:
            line = f"{indent}{name}: {_flow(value)}"
            marks = _marks(sub, sources)
            if marks:
                line += "  # from " + ", ".join(marks)
            out.append(line)
    return out


def render_text(
    config: Config,
    db_path: str,
    *,
    config_from: str | None = None,
    db_from: str | None = None,
) -> str:
    """The effective configuration as YAML, each value from the environment marked."""
    from incident_cli.config.defaults import BUILTIN, DEFAULT_CONFIG_NAME

    sources = from_environment(config, db_from)
    if config.path == BUILTIN:
        where = f"the built-in defaults (there is no ./{DEFAULT_CONFIG_NAME})"
    else:
        where = config.path + (f" (from {config_from})" if config_from else "")
    header = [
        f"# Effective configuration: {where}.",
        "# `# from VAR` marks a value taken from the environment; behaviour variables win over",
        "# the file. Secrets are masked.",
    ]
    for override in config.env_overrides:
        header.append(f"# {override_text(override)}")
    body = _lines(effective_config(config, db_path), "", "", sources)
    return redact(mask_userinfo("\n".join([*header, *body]) + "\n"), config.secrets())


def render_json(
    config: Config, db_path: str, *, config_from: str | None = None, db_from: str | None = None
) -> dict[str, Any]:
    from incident_cli.config.defaults import BUILTIN

    data = {
        "file": None if config.path == BUILTIN else config.path,
        "file_from": config_from,
        "config": effective_config(config, db_path),
        "from_environment": from_environment(config, db_from),
        "overrides": [
            {
                "variable": o.variable,
                "key": o.key,
                "value": o.text,
                "file_value": duration_text(float(o.replaced))
                if o.key == "recovery.timeout"
                else o.replaced,
            }
            for o in config.env_overrides
        ],
    }
    masked: dict[str, Any] = json.loads(
        redact(mask_userinfo(json.dumps(data, ensure_ascii=False)), config.secrets())
    )
    return masked
