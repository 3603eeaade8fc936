"""The environment: behaviour variables that win over keys, and the built-in channels they make."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from incident_cli.config.model import AppliedOverride, Config
from incident_cli.config.yamlraw import Raw, Scalar
from incident_cli.errors import ConfigError


def _parse_env_bool(value: str) -> bool:
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def _parse_positive_int(value: str) -> int:
    if not re.fullmatch(r"\d+", value) or int(value) < 1:
        raise ValueError(f"expected a whole number of at least 1, got {value!r}")
    return int(value)


def _parse_nonneg_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"expected a number, got {value!r}") from None
    if not (number >= 0 and number != float("inf")):
        raise ValueError(f"expected a number of at least 0, got {value!r}")
    return number


def _parse_fraction(value: str) -> float:
    number = _parse_nonneg_float(value)
    if number > 1:
        raise ValueError("is a fraction between 0 and 1")
    return number


def _parse_minutes(value: str) -> float:
    minutes = _parse_nonneg_float(value)
    if minutes <= 0:
        raise ValueError("must be above 0")
    return minutes * 60


@dataclass(frozen=True)
class EnvOverride:
    """A behaviour variable that wins over a config key (the SPEC names it beside the key)."""

    variable: str
    key: str  # the key path in the file
    attribute: str  # the same value's path on Config
    parse: Callable[[str], Any]


# The one list of behaviour variables: applied in _build, shown by `config show` and `test`,
# named (commented out) in cron/incident.env.example.
ENV_OVERRIDES = (
    EnvOverride(
        "INCIDENT_AUTO_RESOLUTION_ENABLED",
        "incidents.auto_resolve",
        "incidents.auto_resolve",
        _parse_env_bool,
    ),
    EnvOverride("AUTO_RECOVERY_ENABLED", "recovery.enabled", "recovery.enabled", _parse_env_bool),
    EnvOverride(
        "SERVICE_RECOVERY_TIMEOUT_MINUTES",
        "recovery.timeout",
        "recovery.default_timeout",
        _parse_minutes,
    ),
    EnvOverride(
        "AUTO_BLOCK_SUSPICIOUS_IPS", "security.auto_block", "security.auto_block", _parse_env_bool
    ),
    EnvOverride(
        "SECURITY_INCIDENT_AUTO_ESCALATE",
        "security.auto_escalate",
        "security.auto_escalate",
        _parse_env_bool,
    ),
    EnvOverride("ANOMALY_WINDOW", "anomaly.window", "anomaly.window", _parse_positive_int),
    EnvOverride(
        "ANOMALY_FAIL_THRESHOLD",
        "anomaly.fail_threshold",
        "anomaly.fail_threshold",
        _parse_fraction,
    ),
    EnvOverride(
        "ANOMALY_P95_FACTOR", "anomaly.p95_factor", "anomaly.p95_factor", _parse_nonneg_float
    ),
    EnvOverride("GRAFANA_URL", "links.grafana", "grafana_url", str),
)

ENV_VARIABLES = tuple(o.variable for o in ENV_OVERRIDES)


def _env_value(env: Mapping[str, str], name: str, parse: Callable[[str], Any]) -> Any:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        return parse(raw.strip())
    except ValueError as exc:
        raise ConfigError("environment", name, f"{exc}") from None


def apply_env_overrides(config: Config, env: Mapping[str, str]) -> Config:
    from dataclasses import replace

    applied: list[AppliedOverride] = []
    for override in ENV_OVERRIDES:
        value = _env_value(env, override.variable, override.parse)
        if value is None:
            continue
        section, _, name = override.attribute.rpartition(".")
        if section:
            part = getattr(config, section)
            replaced = getattr(part, name)
            config = replace(config, **{section: replace(part, **{name: value})})
        else:
            replaced = getattr(config, name)
            config = replace(config, **{name: value})
        text = env[override.variable].strip()
        applied.append(AppliedOverride(override.variable, override.key, text, value, replaced))
    return replace(config, env_overrides=tuple(applied))


def builtin_channels(env: Mapping[str, str]) -> dict[str, Any]:
    """Channels for the environment variables that are set, as YAML-shaped data."""
    channels: dict[str, Any] = {}
    if env.get("SLACK_WEBHOOK_URL"):
        channels["slack"] = {"type": "slack", "webhook_url": "${SLACK_WEBHOOK_URL}"}
    if env.get("PAGERDUTY_API_KEY"):
        channels["pagerduty"] = {
            "type": "pagerduty",
            "routing_key": "${PAGERDUTY_API_KEY}",
            "min_severity": "critical",
        }
    if env.get("STATUSPAGE_API_KEY") and env.get("STATUSPAGE_PAGE_ID"):
        channels["statuspage"] = {
            "type": "statuspage",
            "api_key": "${STATUSPAGE_API_KEY}",
            "page_id": "${STATUSPAGE_PAGE_ID}",
        }
    if env.get("SMTP_HOST") and env.get("ALERT_EMAIL_TO"):
        channels["email"] = {
            "type": "email",
            "host": "${SMTP_HOST}",
            "port": "${SMTP_PORT:-25}",
            "starttls": "${SMTP_STARTTLS:-false}",
            "username": "${SMTP_USERNAME:-}",
            "password": "${SMTP_PASSWORD:-}",
            "from": "${SMTP_FROM:-incident@localhost}",
            "to": "${ALERT_EMAIL_TO}",
        }
    if env.get("INCIDENT_WEBHOOK_URL"):
        channels["webhook"] = {"type": "webhook", "url": "${INCIDENT_WEBHOOK_URL}"}
    return channels


def to_raw(value: Any) -> Raw:
    """Plain Python data → raw YAML nodes (for the built-in channels)."""
    if isinstance(value, dict):
        return {k: to_raw(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_raw(v) for v in value]
    return Scalar(text=str(value), tag="str", quoted=True, line=0)
