"""The YAML rule file: loading, `${VAR}` expansion, validation of every key, built-in defaults."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from incident_cli.config.yamlraw import Raw, RawYAMLError, Scalar, load_raw
from incident_cli.errors import ConfigError
from incident_cli.times import parse_duration

SEVERITIES = ("info", "warning", "error", "critical")
SOURCE_TYPES = ("prometheus", "alertmanager")
DEFAULT_MAX_ALERTS = 50000  # per source: a source that reports more is a failed source
CHANNEL_TYPES = ("slack", "pagerduty", "statuspage", "email", "webhook")
BUILTIN_HANDLERS = (
    "default",
    "service_down",
    "slo_breach",
    "performance_issue",
    "security_incident",
)
PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
STATUSPAGE_API_URL = "https://api.statuspage.io/v1"
DEFAULT_CONFIG_NAME = "incident.yaml"
BUILTIN = "<built-in defaults>"


def severity_rank(severity: str) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else 1


# --------------------------------------------------------------------------- dataclasses


@dataclass(frozen=True)
class SourceConfig:
    name: str
    type: str
    url: str
    timeout: float = 10.0
    username: str | None = None
    password: str | None = None
    bearer_token: str | None = None
    ca_file: str | None = None
    insecure_skip_verify: bool = False
    require_alert: str | None = None
    max_alerts: int = DEFAULT_MAX_ALERTS


@dataclass(frozen=True)
class Matcher:
    label: str
    value: str
    regex: re.Pattern[str] | None = None

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.label)
        if actual is None:
            return False
        if self.regex is not None:
            return self.regex.fullmatch(actual) is not None
        return actual == self.value


@dataclass(frozen=True)
class VerifyConfig:
    within: float
    http: str | None = None


@dataclass(frozen=True)
class RecoveryRule:
    commands: tuple[tuple[str, ...], ...]
    timeout: float | None = None  # None: recovery default (SERVICE_RECOVERY_TIMEOUT_MINUTES)
    verify: VerifyConfig | None = None
    max_attempts: int = 3
    backoff: float = 30.0
    cooldown: float = 3600.0


@dataclass(frozen=True)
class DiagnosticsRule:
    commands: tuple[tuple[str, ...], ...] = ()
    queries: tuple[str, ...] = ()
    source: str | None = None  # a prometheus source name; default: the first prometheus source
    timeout: float = 30.0


@dataclass(frozen=True)
class SecurityRule:
    ip_label: str = "source_ip"
    block_command: tuple[str, ...] | None = None
    # Block only when the alert's value is at least this; None: whatever the value.
    min_value: float | None = None
    # The annotation that carries the value for alerts without one (Alertmanager's API).
    value_annotation: str | None = None


@dataclass(frozen=True)
class Rule:
    name: str
    match: tuple[Matcher, ...]
    handler: str = "default"
    severity: str | None = None
    group_by: tuple[str, ...] | None = None  # None: every label
    notify: tuple[str, ...] | None = None  # None: defaults.notify
    runbook: str | None = None
    recovery: RecoveryRule | None = None
    diagnostics: DiagnosticsRule | None = None
    security: SecurityRule | None = None

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(m.matches(labels) for m in self.match)


DEFAULT_RULE = Rule(name="default", match=(), handler="default")


@dataclass(frozen=True)
class ChannelConfig:
    name: str
    type: str
    enabled: bool
    options: Mapping[str, Any]
    min_severity: str | None = None
    timeout: float = 10.0
    # messages per second; None: the channel type's default; 0: unlimited
    rate_limit: float | None = None
    disabled_reason: str | None = None
    secret_keys: tuple[str, ...] = ()

    def secrets(self) -> list[str]:
        """The secret values of this channel, for masking."""
        values = [str(self.options[k]) for k in self.secret_keys if self.options.get(k)]
        # Webhook headers usually carry tokens (Authorization, X-Api-Key): treat them as secret.
        values.extend(str(v) for v in (self.options.get("headers") or {}).values() if v)
        return values


@dataclass(frozen=True)
class IncidentsConfig:
    resolve_after: float = 300.0
    reopen_within: float = 900.0
    flapping_changes: int = 4
    flapping_window: float = 3600.0
    storm_max_new_per_tick: int = 20
    auto_resolve: bool = True


@dataclass(frozen=True)
class DefaultsConfig:
    severity: str = "warning"
    notify: tuple[str, ...] = ()


@dataclass(frozen=True)
class AnomalyConfig:
    journeys: str | None = None  # absolute path
    window: int = 12
    fail_threshold: float = 0.10
    p95_factor: float = 1.5
    consecutive_failures: int = 3


@dataclass(frozen=True)
class RecoveryConfig:
    enabled: bool = True
    max_concurrent: int = 2
    default_timeout: float = 600.0
    env_passthrough: tuple[str, ...] = ()  # variables a command gets besides the minimal set


@dataclass(frozen=True)
class SecurityConfig:
    auto_block: bool = False
    auto_escalate: bool = True
    never_block: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    max_blocks_per_tick: int = 5


@dataclass(frozen=True)
class LogConfig:
    file: str  # absolute path
    format: str = "json"


@dataclass(frozen=True)
class Config:
    path: str  # the file, or BUILTIN
    base_dir: str
    sources: Mapping[str, SourceConfig]
    db_path: str
    incidents: IncidentsConfig
    defaults: DefaultsConfig
    rules: tuple[Rule, ...]
    channels: Mapping[str, ChannelConfig]
    escalation_channels: tuple[str, ...]
    anomaly: AnomalyConfig
    recovery: RecoveryConfig
    security: SecurityConfig
    grafana_url: str | None = None
    log: LogConfig | None = None
    env: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    # Where values came from the environment: the behaviour variables that won over the file,
    # and the key paths whose text expanded a ${VAR} (path -> the variables it used).
    env_overrides: tuple[AppliedOverride, ...] = ()
    env_expanded: Mapping[str, tuple[str, ...]] = field(default_factory=dict, compare=False)

    def rule_by_name(self, name: str) -> Rule:
        for rule in self.rules:
            if rule.name == name:
                return rule
        return DEFAULT_RULE

    def enabled_channels(self, names: tuple[str, ...]) -> list[ChannelConfig]:
        return [self.channels[n] for n in names if n in self.channels and self.channels[n].enabled]

    def secrets(self) -> list[str]:
        """Every secret value in the config, for masking anything printed or stored."""
        values: list[str] = []
        for channel in self.channels.values():
            values.extend(channel.secrets())
        for source in self.sources.values():
            values.extend(v for v in (source.password, source.bearer_token) if v)
        return [v for v in values if len(v) >= 4]


# --------------------------------------------------------------------------- reading


_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _Reader:
    """Typed access to raw YAML with key paths, `${VAR}` expansion and `<key>_file` secrets."""

    def __init__(self, file: str, env: Mapping[str, str], base_dir: str) -> None:
        self.file = file
        self.env = env
        self.base_dir = base_dir
        self.expanded: dict[str, list[str]] = {}

    def fail(self, path: str, problem: str) -> ConfigError:
        return ConfigError(self.file, path, problem)

    def expand(self, path: str, text: str) -> str:
        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name, default = match.group(1), match.group(2)
            value = self.env.get(name)
            if value is None or (value == "" and default is not None):
                if default is None:
                    raise self.fail(path, f"environment variable {name} is not set")
                return default
            self.expanded.setdefault(path, []).append(name)
            return value

        return _VAR.sub(replace, text)

    def mapping(self, path: str, raw: Raw | None, allowed: tuple[str, ...]) -> dict[str, Raw]:
        if raw is None or (isinstance(raw, Scalar) and raw.tag == "null"):
            return {}
        if not isinstance(raw, dict):
            raise self.fail(path, f"expected a mapping, got {_describe(raw)}")
        for key in raw:
            if key not in allowed:
                raise self.fail(_join(path, key), f"unknown key (allowed: {', '.join(allowed)})")
        return raw

    def free_mapping(self, path: str, raw: Raw | None) -> dict[str, Raw]:
        """A mapping whose keys are the user's own (source names, labels, channel names)."""
        if raw is None or (isinstance(raw, Scalar) and raw.tag == "null"):
            return {}
        if not isinstance(raw, dict):
            raise self.fail(path, f"expected a mapping, got {_describe(raw)}")
        return raw

    def text(self, path: str, raw: Raw | None, *, allow_empty: bool = True) -> str:
        if not isinstance(raw, Scalar) or raw.tag == "null":
            raise self.fail(path, f"expected a string, got {_describe(raw)}")
        value = self.expand(path, raw.text)
        if not allow_empty and not value:
            raise self.fail(path, "must not be empty")
        if len(value) > 65536:
            raise self.fail(path, "value is longer than 64 KiB")
        return value

    def opt_text(self, path: str, raw: Raw | None) -> str | None:
        if raw is None or (isinstance(raw, Scalar) and raw.tag == "null"):
            return None
        return self.text(path, raw)

    def boolean(self, path: str, raw: Raw | None, default: bool) -> bool:
        if raw is None:
            return default
        value = self.text(path, raw).strip().lower()
        if value in ("true", "yes", "on", "1"):
            return True
        if value in ("false", "no", "off", "0"):
            return False
        raise self.fail(path, f"expected true or false, got {value!r}")

    def integer(self, path: str, raw: Raw | None, default: int, minimum: int = 0) -> int:
        if raw is None:
            return default
        value = self.text(path, raw).strip()
        if not re.fullmatch(r"[+-]?\d+", value):
            raise self.fail(path, f"expected a whole number, got {value!r}")
        number = int(value)
        if number < minimum:
            raise self.fail(path, f"must be at least {minimum}, got {number}")
        return number

    def number(self, path: str, raw: Raw | None, default: float, minimum: float = 0.0) -> float:
        if raw is None:
            return default
        value = self.text(path, raw).strip()
        try:
            number = float(value)
        except ValueError:
            raise self.fail(path, f"expected a number, got {value!r}") from None
        if number != number or number in (float("inf"), float("-inf")) or number < minimum:
            raise self.fail(path, f"must be a number of at least {minimum}, got {value!r}")
        return number

    def duration(self, path: str, raw: Raw | None, default: float) -> float:
        if raw is None:
            return default
        value = self.text(path, raw).strip()
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise self.fail(path, str(exc)) from None

    def opt_duration(self, path: str, raw: Raw | None) -> float | None:
        return None if raw is None else self.duration(path, raw, 0.0)

    def seq(self, path: str, raw: Raw | None) -> list[Raw]:
        if raw is None or (isinstance(raw, Scalar) and raw.tag == "null"):
            return []
        if not isinstance(raw, list):
            raise self.fail(path, f"expected a list, got {_describe(raw)}")
        return raw

    def texts(self, path: str, raw: Raw | None) -> tuple[str, ...]:
        return tuple(
            self.text(f"{path}[{i}]", item, allow_empty=False)
            for i, item in enumerate(self.seq(path, raw))
        )

    def argv_list(self, path: str, raw: Raw | None) -> tuple[tuple[str, ...], ...]:
        out = []
        for i, item in enumerate(self.seq(path, raw)):
            argv = self.texts(f"{path}[{i}]", item)
            if not argv:
                raise self.fail(f"{path}[{i}]", "a command needs at least a program name")
            self.check_program(f"{path}[{i}][0]", argv[0])
            out.append(argv)
        return tuple(out)

    def check_program(self, path: str, program: str) -> None:
        # An alert label must never choose which program runs: placeholders only in arguments.
        if "{" in program or "}" in program:
            raise self.fail(path, f"the program {program!r} cannot contain a {{placeholder}}")

    def secret(self, path: str, section: Mapping[str, Raw], key: str) -> str | None:
        """`key: value` or `key_file: PATH` (the file's content, trailing newline dropped)."""
        direct, from_file = section.get(key), section.get(f"{key}_file")
        if direct is not None and from_file is not None:
            raise self.fail(_join(path, key), f"give either {key} or {key}_file, not both")
        if from_file is not None:
            file_path = self.text(_join(path, f"{key}_file"), from_file, allow_empty=False)
            resolved = Path(self.base_dir, file_path)
            try:
                return resolved.read_text(encoding="utf-8").rstrip("\r\n")
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
                raise self.fail(
                    _join(path, f"{key}_file"), f"cannot read {resolved}: {reason}"
                ) from None
        return self.opt_text(_join(path, key), direct)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _describe(raw: Raw | None) -> str:
    if raw is None:
        return "nothing"
    if isinstance(raw, dict):
        return "a mapping"
    if isinstance(raw, list):
        return "a list"
    return "null" if raw.tag == "null" else f"{raw.tag} {raw.text!r}"


# --------------------------------------------------------------------------- sections

_TOP_KEYS = (
    "sources",
    "state",
    "incidents",
    "defaults",
    "rules",
    "channels",
    "escalation",
    "anomaly",
    "recovery",
    "security",
    "links",
    "log",
)


def _sources(r: _Reader, raw: Raw | None) -> dict[str, SourceConfig]:
    out: dict[str, SourceConfig] = {}
    for name, item in r.free_mapping("sources", raw).items():
        path = f"sources.{name}"
        if not isinstance(item, dict):
            raise r.fail(path, f"expected a mapping, got {_describe(item)}")
        s = r.mapping(
            path,
            item,
            (
                "type",
                "url",
                "timeout",
                "basic_auth",
                "bearer_token",
                "bearer_token_file",
                "ca_file",
                "insecure_skip_verify",
                "require_alert",
                "max_alerts",
            ),
        )
        kind = r.text(f"{path}.type", s.get("type"))
        if kind not in SOURCE_TYPES:
            raise r.fail(
                f"{path}.type", f"unknown source type {kind!r} (known: {', '.join(SOURCE_TYPES)})"
            )
        url = r.text(f"{path}.url", s.get("url"), allow_empty=False).rstrip("/")
        if not re.match(r"^https?://[^\s/]+", url):
            raise r.fail(f"{path}.url", f"expected an http:// or https:// URL, got {url!r}")
        auth = r.mapping(
            f"{path}.basic_auth", s.get("basic_auth"), ("username", "password", "password_file")
        )
        username = r.opt_text(f"{path}.basic_auth.username", auth.get("username"))
        password = r.secret(f"{path}.basic_auth", auth, "password")
        if auth and (not username or password is None):
            raise r.fail(f"{path}.basic_auth", "needs username and password (or password_file)")
        ca_file = r.opt_text(f"{path}.ca_file", s.get("ca_file"))
        if ca_file:
            ca_file = str(Path(r.base_dir, ca_file))
            if not os.access(ca_file, os.R_OK) or not Path(ca_file).is_file():
                raise r.fail(f"{path}.ca_file", f"cannot read {ca_file}")
        bearer = r.secret(path, s, "bearer_token") or None
        if bearer is not None and not re.fullmatch(r"[\x21-\x7e]+", bearer):
            raise r.fail(f"{path}.bearer_token", "must be printable ASCII without spaces")
        timeout = r.duration(f"{path}.timeout", s.get("timeout"), 10.0)
        if timeout <= 0:
            raise r.fail(f"{path}.timeout", "must be more than 0s")
        out[name] = SourceConfig(
            name=name,
            type=kind,
            url=url,
            timeout=timeout,
            username=username,
            password=password,
            bearer_token=bearer,
            ca_file=ca_file,
            insecure_skip_verify=r.boolean(
                f"{path}.insecure_skip_verify", s.get("insecure_skip_verify"), False
            ),
            require_alert=r.opt_text(f"{path}.require_alert", s.get("require_alert")) or None,
            max_alerts=r.integer(
                f"{path}.max_alerts", s.get("max_alerts"), DEFAULT_MAX_ALERTS, minimum=1
            ),
        )
    return out


def _severity(r: _Reader, path: str, raw: Raw | None) -> str | None:
    value = r.opt_text(path, raw)
    if value is None:
        return None
    if value not in SEVERITIES:
        raise r.fail(path, f"unknown severity {value!r} (known: {', '.join(SEVERITIES)})")
    return value


def _handler_name(r: _Reader, path: str, raw: Raw | None) -> str:
    name = r.text(path, raw, allow_empty=False) if raw is not None else "default"
    if name in BUILTIN_HANDLERS:
        return name
    if ":" not in name:
        raise r.fail(
            path,
            f"unknown handler {name!r} (built-in: {', '.join(BUILTIN_HANDLERS)}; "
            "or module:function)",
        )
    from incident_cli.handlers.planning import load_user_handler

    try:
        load_user_handler(name)
    except (ImportError, AttributeError, TypeError, ValueError) as exc:
        raise r.fail(path, f"handler {name!r} cannot be loaded: {exc}") from None
    return name


def _rules(r: _Reader, raw: Raw | None) -> tuple[Rule, ...]:
    rules: list[Rule] = []
    seen: set[str] = set()
    for i, item in enumerate(r.seq("rules", raw)):
        path = f"rules[{i}]"
        s = r.mapping(
            path,
            item,
            (
                "name",
                "match",
                "handler",
                "severity",
                "group_by",
                "notify",
                "runbook",
                "recovery",
                "diagnostics",
                "security",
            ),
        )
        if not isinstance(item, dict):
            raise r.fail(path, "expected a mapping")
        name = r.text(f"{path}.name", s.get("name"), allow_empty=False)
        if name in seen or name == "default":
            raise r.fail(f"{path}.name", f"rule name {name!r} is used twice or reserved")
        seen.add(name)
        if len(name) > 200 or not re.fullmatch(r"[A-Za-z0-9_.:@+=-]+", name):
            raise r.fail(f"{path}.name", "use letters, digits and _.:@+=- only")
        match_raw = r.free_mapping(f"{path}.match", s.get("match"))
        if not match_raw:
            raise r.fail(f"{path}.match", "needs at least one label to match")
        matchers = []
        for label, value_raw in match_raw.items():
            value = r.text(f"{path}.match.{label}", value_raw)
            regex = None
            if value.startswith("~"):
                try:
                    regex = re.compile(value[1:])
                except re.error as exc:
                    raise r.fail(
                        f"{path}.match.{label}", f"bad regular expression: {exc}"
                    ) from None
            matchers.append(Matcher(label, value, regex))
        group_by = s.get("group_by")
        rules.append(
            Rule(
                name=name,
                match=tuple(matchers),
                handler=_handler_name(r, f"{path}.handler", s.get("handler")),
                severity=_severity(r, f"{path}.severity", s.get("severity")),
                group_by=None if group_by is None else r.texts(f"{path}.group_by", group_by),
                notify=None if s.get("notify") is None else r.texts(f"{path}.notify", s["notify"]),
                runbook=r.opt_text(f"{path}.runbook", s.get("runbook")),
                recovery=_recovery_rule(r, f"{path}.recovery", s.get("recovery")),
                diagnostics=_diagnostics_rule(r, f"{path}.diagnostics", s.get("diagnostics")),
                security=_security_rule(r, f"{path}.security", s.get("security")),
            )
        )
    return tuple(rules)


def _recovery_rule(r: _Reader, path: str, raw: Raw | None) -> RecoveryRule | None:
    if raw is None:
        return None
    s = r.mapping(
        path,
        raw,
        ("commands", "timeout", "verify", "max_attempts", "backoff", "cooldown"),
    )
    verify = None
    if s.get("verify") is not None:
        v = r.mapping(f"{path}.verify", s["verify"], ("within", "http"))
        http = r.opt_text(f"{path}.verify.http", v.get("http"))
        if http is not None and not re.match(r"^https?://", http):
            raise r.fail(f"{path}.verify.http", f"expected an http(s) URL, got {http!r}")
        verify = VerifyConfig(
            within=r.duration(f"{path}.verify.within", v.get("within"), 600.0), http=http
        )
    commands = r.argv_list(f"{path}.commands", s.get("commands"))
    if not commands:
        raise r.fail(f"{path}.commands", "needs at least one command")
    return RecoveryRule(
        commands=commands,
        timeout=r.opt_duration(f"{path}.timeout", s.get("timeout")),
        verify=verify,
        max_attempts=r.integer(f"{path}.max_attempts", s.get("max_attempts"), 3, minimum=1),
        backoff=r.duration(f"{path}.backoff", s.get("backoff"), 30.0),
        cooldown=r.duration(f"{path}.cooldown", s.get("cooldown"), 3600.0),
    )


def _diagnostics_rule(r: _Reader, path: str, raw: Raw | None) -> DiagnosticsRule | None:
    if raw is None:
        return None
    s = r.mapping(path, raw, ("commands", "queries", "source", "timeout"))
    return DiagnosticsRule(
        commands=r.argv_list(f"{path}.commands", s.get("commands")),
        queries=r.texts(f"{path}.queries", s.get("queries")),
        source=r.opt_text(f"{path}.source", s.get("source")),
        timeout=r.duration(f"{path}.timeout", s.get("timeout"), 30.0),
    )


def _security_rule(r: _Reader, path: str, raw: Raw | None) -> SecurityRule | None:
    if raw is None:
        return None
    s = r.mapping(path, raw, ("ip_label", "block_command", "min_value", "value_annotation"))
    block = s.get("block_command")
    block_argv = r.texts(f"{path}.block_command", block) if block is not None else None
    if block_argv is not None and not block_argv:
        raise r.fail(f"{path}.block_command", "needs at least a program name")
    if block_argv:
        r.check_program(f"{path}.block_command[0]", block_argv[0])
    return SecurityRule(
        ip_label=r.text(f"{path}.ip_label", s["ip_label"], allow_empty=False)
        if "ip_label" in s
        else "source_ip",
        block_command=block_argv,
        min_value=r.number(f"{path}.min_value", s["min_value"], 0.0) if "min_value" in s else None,
        value_annotation=r.text(
            f"{path}.value_annotation", s["value_annotation"], allow_empty=False
        )
        if "value_annotation" in s
        else None,
    )


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


def _rate_limit(r: _Reader, path: str, raw: Raw | None) -> float | None:
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


def _channels(r: _Reader, raw: Raw | None) -> dict[str, ChannelConfig]:
    out: dict[str, ChannelConfig] = {}
    for name, item in r.free_mapping("channels", raw).items():
        path = f"channels.{name}"
        if not isinstance(item, dict):
            raise r.fail(path, f"expected a mapping, got {_describe(item)}")
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
            min_severity=_severity(r, f"{path}.min_severity", s.get("min_severity")),
            timeout=r.duration(f"{path}.timeout", s.get("timeout"), 10.0),
            rate_limit=_rate_limit(r, f"{path}.rate_limit", s.get("rate_limit")),
            disabled_reason=f"{', '.join(missing)} is empty" if missing else None,
            secret_keys=secrets,
        )
    return out


def _check_name_template(r: _Reader, path: str, template: str | None) -> None:
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


def _check_channel_names(
    r: _Reader, path: str, names: tuple[str, ...], channels: Mapping[str, ChannelConfig]
) -> None:
    for i, name in enumerate(names):
        if name not in channels:
            known = ", ".join(channels) or "none configured"
            raise r.fail(f"{path}[{i}]", f"unknown channel {name!r} (channels: {known})")


# --------------------------------------------------------------------------- environment


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


@dataclass(frozen=True)
class AppliedOverride:
    """An environment variable that replaced a value of the file (or of the built-ins)."""

    variable: str
    key: str
    text: str  # the variable's value as set
    value: Any
    replaced: Any  # what the file (or its default) said


def _env_value(env: Mapping[str, str], name: str, parse: Callable[[str], Any]) -> Any:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        return parse(raw.strip())
    except ValueError as exc:
        raise ConfigError("environment", name, f"{exc}") from None


def _apply_env_overrides(config: Config, env: Mapping[str, str]) -> Config:
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


# --------------------------------------------------------------------------- loading

BUILTIN_YAML = """
sources:
  prometheus: {type: prometheus, url: "${PROMETHEUS_URL:-http://localhost:9090}"}
rules:
  - {name: service-down, match: {alertname: "~(BackendServiceDown|EphemerisServiceDown)"},
     handler: service_down, severity: critical}
  - {name: slo, match: {alertname: "~(ServiceAvailabilityBreach|ErrorRateSLOBreach)"},
     handler: slo_breach}
  - {name: latency, match: {alertname: "~LatencySLOBreach_.*"}, handler: performance_issue}
  - {name: auth-spike, match: {alertname: AuthenticationFailureSpike},
     handler: security_incident, severity: critical}
"""


def _builtin_channels(env: Mapping[str, str]) -> dict[str, Any]:
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


def _to_raw(value: Any) -> Raw:
    """Plain Python data → raw YAML nodes (for the built-in channels)."""
    if isinstance(value, dict):
        return {k: _to_raw(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_raw(v) for v in value]
    return Scalar(text=str(value), tag="str", quoted=True, line=0)


def resolve_config_path(explicit: str | None, env: Mapping[str, str]) -> tuple[Path, bool]:
    """The config path and whether the user named it (a named file must exist)."""
    if explicit:
        return Path(explicit), True
    if env.get("INCIDENT_CONFIG"):
        return Path(env["INCIDENT_CONFIG"]), True
    return Path(DEFAULT_CONFIG_NAME), False


def load_config(
    path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    *,
    must_exist: bool = True,
) -> Config:
    """Load, expand and validate the config; with no file (and must_exist False) the built-ins."""
    env = dict(os.environ if env is None else env)
    if path is None:
        config_path, must_exist = resolve_config_path(None, env)
    else:
        config_path = Path(path)
    if config_path.exists() or must_exist:
        file = str(config_path)
        try:
            data = config_path.read_bytes()
        except OSError as exc:
            raise ConfigError(file, "", f"cannot read: {exc.strerror}") from None
        if len(data) > 4 * 1024 * 1024:
            raise ConfigError(file, "", "file is larger than 4 MiB")
        try:
            text = data.decode("utf-8")
            raw = load_raw(text)
        except UnicodeDecodeError:
            raise ConfigError(file, "", "file is not UTF-8 text") from None
        except RawYAMLError as exc:
            raise ConfigError(file, "", str(exc)) from None
        base_dir = str(config_path.resolve().parent)
        builtin = False
    else:
        file = BUILTIN
        raw = load_raw(BUILTIN_YAML)
        assert isinstance(raw, dict)
        raw["channels"] = _to_raw(_builtin_channels(env))
        base_dir = str(Path.cwd())
        builtin = True
    return _build(file, raw, env, base_dir, builtin)


def _build(
    file: str, raw: Raw | None, env: Mapping[str, str], base_dir: str, builtin: bool
) -> Config:
    r = _Reader(file, env, base_dir)
    top = r.mapping("", raw, _TOP_KEYS)

    sources = _sources(r, top.get("sources"))
    state = r.mapping("state", top.get("state"), ("db",))
    db_name = r.text("state.db", state["db"], allow_empty=False) if "db" in state else "incident.db"
    db_path = str(Path(base_dir, db_name))

    inc = r.mapping(
        "incidents",
        top.get("incidents"),
        ("resolve_after", "reopen_within", "flapping", "storm", "auto_resolve"),
    )
    flap = r.mapping("incidents.flapping", inc.get("flapping"), ("changes", "window"))
    storm = r.mapping("incidents.storm", inc.get("storm"), ("max_new_per_tick",))
    incidents = IncidentsConfig(
        resolve_after=r.duration("incidents.resolve_after", inc.get("resolve_after"), 300.0),
        reopen_within=r.duration("incidents.reopen_within", inc.get("reopen_within"), 900.0),
        flapping_changes=r.integer("incidents.flapping.changes", flap.get("changes"), 4, 1),
        flapping_window=r.duration("incidents.flapping.window", flap.get("window"), 3600.0),
        storm_max_new_per_tick=r.integer(
            "incidents.storm.max_new_per_tick", storm.get("max_new_per_tick"), 20, 1
        ),
        auto_resolve=r.boolean("incidents.auto_resolve", inc.get("auto_resolve"), True),
    )

    channels = _channels(r, top.get("channels"))
    defaults_raw = r.mapping("defaults", top.get("defaults"), ("severity", "notify"))
    if "notify" in defaults_raw:
        default_notify = r.texts("defaults.notify", defaults_raw["notify"])
    elif builtin:
        default_notify = tuple(channels)
    else:
        default_notify = ("slack",) if "slack" in channels else ()
    defaults = DefaultsConfig(
        severity=_severity(r, "defaults.severity", defaults_raw.get("severity")) or "warning",
        notify=default_notify,
    )
    _check_channel_names(r, "defaults.notify", defaults.notify, channels)

    rules = _rules(r, top.get("rules"))
    for i, rule in enumerate(rules):
        if rule.notify is not None:
            _check_channel_names(r, f"rules[{i}].notify", rule.notify, channels)
        if rule.diagnostics and rule.diagnostics.source:
            src = sources.get(rule.diagnostics.source)
            if src is None or src.type != "prometheus":
                raise r.fail(
                    f"rules[{i}].diagnostics.source",
                    f"{rule.diagnostics.source!r} is not a configured prometheus source",
                )

    esc = r.mapping("escalation", top.get("escalation"), ("channels",))
    escalation_channels = r.texts("escalation.channels", esc.get("channels"))
    _check_channel_names(r, "escalation.channels", escalation_channels, channels)

    an = r.mapping(
        "anomaly",
        top.get("anomaly"),
        ("journeys", "window", "fail_threshold", "p95_factor", "consecutive_failures"),
    )
    journeys = r.opt_text("anomaly.journeys", an.get("journeys"))
    anomaly = AnomalyConfig(
        journeys=str(Path(base_dir, journeys)) if journeys else None,
        window=r.integer("anomaly.window", an.get("window"), 12, 1),
        fail_threshold=r.number("anomaly.fail_threshold", an.get("fail_threshold"), 0.10),
        p95_factor=r.number("anomaly.p95_factor", an.get("p95_factor"), 1.5),
        consecutive_failures=r.integer(
            "anomaly.consecutive_failures", an.get("consecutive_failures"), 3, 1
        ),
    )
    if anomaly.fail_threshold > 1:
        raise r.fail("anomaly.fail_threshold", "is a fraction between 0 and 1")

    rec = r.mapping(
        "recovery",
        top.get("recovery"),
        ("enabled", "max_concurrent", "timeout", "env_passthrough"),
    )
    passthrough = r.texts("recovery.env_passthrough", rec.get("env_passthrough"))
    for i, name in enumerate(passthrough):
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise r.fail(f"recovery.env_passthrough[{i}]", f"{name!r} is not a variable name")
    recovery = RecoveryConfig(
        enabled=r.boolean("recovery.enabled", rec.get("enabled"), True),
        max_concurrent=r.integer("recovery.max_concurrent", rec.get("max_concurrent"), 2, 1),
        default_timeout=r.duration("recovery.timeout", rec.get("timeout"), 600.0),
        env_passthrough=tuple(passthrough),
    )

    sec = r.mapping(
        "security",
        top.get("security"),
        ("auto_block", "auto_escalate", "never_block", "max_blocks_per_tick"),
    )
    never_block = []
    default_never = ("127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "::1/128")
    nb_raw = sec.get("never_block")
    for i, text in enumerate(
        r.texts("security.never_block", nb_raw) if nb_raw is not None else default_never
    ):
        try:
            never_block.append(ipaddress.ip_network(text, strict=False))
        except ValueError as exc:
            raise r.fail(f"security.never_block[{i}]", str(exc)) from None
    security = SecurityConfig(
        auto_block=r.boolean("security.auto_block", sec.get("auto_block"), False),
        auto_escalate=r.boolean("security.auto_escalate", sec.get("auto_escalate"), True),
        never_block=tuple(never_block),
        max_blocks_per_tick=r.integer(
            "security.max_blocks_per_tick", sec.get("max_blocks_per_tick"), 5, 0
        ),
    )

    log_raw = r.mapping("log", top.get("log"), ("file", "format"))
    log = None
    if log_raw:
        if "file" not in log_raw:
            raise r.fail("log.file", "is required when log is set")
        log_file = r.text("log.file", log_raw["file"])  # empty (an unset ${VAR:-}): no log
        log_format = r.text("log.format", log_raw["format"]) if "format" in log_raw else "json"
        if log_format != "json":
            raise r.fail("log.format", f"unknown format {log_format!r} (allowed: json)")
        if log_file:
            log = LogConfig(file=str(Path(base_dir, log_file)), format=log_format)

    links = r.mapping("links", top.get("links"), ("grafana",))
    grafana = r.opt_text("links.grafana", links.get("grafana")) or None

    config = Config(
        path=file,
        base_dir=base_dir,
        sources=sources,
        db_path=db_path,
        incidents=incidents,
        defaults=defaults,
        rules=rules,
        channels=channels,
        escalation_channels=escalation_channels,
        anomaly=anomaly,
        recovery=recovery,
        security=security,
        grafana_url=grafana,
        log=log,
        env=env,
        env_expanded={k: tuple(dict.fromkeys(v)) for k, v in r.expanded.items()},
    )
    return _apply_env_overrides(config, env)
