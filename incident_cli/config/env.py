"""The environment: behaviour variables that win over keys, and the built-in channels they make."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from incident_cli.config import defaults as d
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


def _parse_approval(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered not in ("required", "none"):
        raise ValueError(f"expected required or none, got {value!r}")
    return lowered == "required"


def _parse_minutes(value: str) -> float:
    minutes = _parse_nonneg_float(value)
    if minutes <= 0:
        raise ValueError("must be above 0")
    return minutes * 60


@dataclass(frozen=True)
class EnvOverride:
    """A behaviour variable that wins over a config key (docs/configuration.md#environment)."""

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
    EnvOverride("RECOVERY_APPROVAL", "recovery.approval", "recovery.approval", _parse_approval),
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


@dataclass(frozen=True)
class EnvVariable:
    """One environment variable `incident` reads, and what for."""

    name: str
    kind: str  # location | output | http | source | channel | behaviour | tuning | test
    key: str  # what it stands for: an option, a config key, or a channel kind


# The kinds a deployment sets (cron/incident.env.example names each of their variables).
DEPLOYED_KINDS = ("location", "source", "channel", "behaviour")


def variables() -> tuple[EnvVariable, ...]:
    """The one list of every environment variable `incident` reads: where things are, how
    human output looks, the built-in defaults' source, each channel kind's built-in channel,
    the behaviour overrides, and the fault tests' crash hooks (docs/configuration.md,
    Environment, lists the same; tests/test_env_variables.py checks both against the code)."""
    from incident_cli.crashpoint import CRASH_VAR, STOP_VAR
    from incident_cli.notify.channels.registry import KINDS, options_class
    from incident_cli.runtime import LOCK_LEASE_VAR

    found = [
        EnvVariable(d.CONFIG_VAR, "location", "-c/--config"),
        EnvVariable(d.DB_VAR, "location", "--db"),
        EnvVariable(d.HOSTNAME_VAR, "location", "this host's name"),
        EnvVariable(d.NO_COLOR_VAR, "output", "no colour"),
        EnvVariable(d.COLUMNS_VAR, "output", "line width"),
        # requests' own; http.py looks at it to leave such exchanges to requests.
        EnvVariable("NETRC", "http", "a .netrc file of HTTP credentials"),
        EnvVariable(d.PROMETHEUS_URL_VAR, "source", "sources.prometheus.url"),
    ]
    for kind in KINDS:
        defaults = options_class(kind).ENV
        for name in defaults.variables() if defaults is not None else ():
            found.append(EnvVariable(name, "channel", kind))
        for spec in options_class(kind).specs():
            if spec.env:
                found.append(EnvVariable(spec.env, "channel", f"{kind}.{spec.key}"))
    found.extend(EnvVariable(o.variable, "behaviour", o.key) for o in ENV_OVERRIDES)
    found.append(EnvVariable(CRASH_VAR, "test", "tests/faults only"))
    found.append(EnvVariable(STOP_VAR, "test", "the fencing tests only"))
    found.append(EnvVariable(LOCK_LEASE_VAR, "tuning", "the PostgreSQL tick lock's lease"))
    return tuple(found)


def host_name(env: Mapping[str, str]) -> str:
    """The name this host goes by in heartbeats, claims and actions: INCIDENT_HOSTNAME, else
    the machine's hostname. Hosts sharing one state DB must each have a name of their own."""
    raw = (env.get(d.HOSTNAME_VAR) or "").strip()
    if not raw:
        import socket

        return socket.gethostname()[: d.HOSTNAME_MAX] or "localhost"
    if len(raw) > d.HOSTNAME_MAX or not raw.isprintable() or any(c.isspace() for c in raw):
        raise ConfigError(
            "environment",
            d.HOSTNAME_VAR,
            f"expected a name of at most {d.HOSTNAME_MAX} printable characters without spaces",
        )
    return raw


def all_names() -> tuple[str, ...]:
    return tuple(v.name for v in variables())


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
    """Channels for the environment variables that are set, as YAML-shaped data: each kind's
    `Options.ENV`, when every variable it needs is set."""
    from incident_cli.notify.channels.registry import KINDS, options_class

    channels: dict[str, Any] = {}
    for kind in KINDS:
        defaults = options_class(kind).ENV
        if defaults is not None and all(env.get(name) for name in defaults.when):
            channels[kind] = {"type": kind, **defaults.yaml}
    return channels


def to_raw(value: Any) -> Raw:
    """Plain Python data → raw YAML nodes (for the built-in channels)."""
    if isinstance(value, dict):
        return {k: to_raw(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_raw(v) for v in value]
    return Scalar(text=str(value), tag="str", quoted=True, line=0)
