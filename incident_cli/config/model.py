"""The loaded configuration as frozen records: sources, rules, channels and the sections."""

from __future__ import annotations

import contextlib
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from incident_cli.config import defaults as d
from incident_cli.models import SEVERITIES

if TYPE_CHECKING:
    from incident_cli.notify.channels.options import Options

SOURCE_TYPES = ("prometheus", "alertmanager")


_SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}


def severity_rank(severity: str) -> int:
    return _SEVERITY_RANK.get(severity, 1)


@dataclass(frozen=True)
class SourceConfig:
    """A source of alerts (`sources.NAME`): a Prometheus or an Alertmanager, with its replicas."""

    name: str
    type: str
    url: str
    timeout: float = d.SOURCE_TIMEOUT
    username: str | None = None
    password: str | None = None
    bearer_token: str | None = None
    ca_file: str | None = None
    insecure_skip_verify: bool = False
    require_alert: str | None = None
    max_alerts: int = d.MAX_ALERTS
    # `urls:` in the file: the replicas of one source (an Alertmanager cluster, a Prometheus
    # HA pair), all read and merged. Empty for a source with one `url` (then `url` is it);
    # otherwise `url` is the first replica.
    urls: tuple[str, ...] = ()
    # The Prometheus whose ALERTS series `incident replay` reads (default: a Prometheus
    # source's own URL; an Alertmanager keeps no history).
    history_url: str | None = None

    @property
    def replicas(self) -> tuple[str, ...]:
        """Every URL this source is read from."""
        return self.urls or (self.url,)


@dataclass(frozen=True)
class Matcher:
    """One `match:` entry of a rule: a label equal to a value, or fully matching a regex."""

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
    """A recovery rule's `verify:`: how long the fix has to work, and the health URL."""

    within: float
    http: str | None = None


@dataclass(frozen=True)
class RecoveryRule:
    """A rule's `recovery:`: the commands that fix it, their budget and approval gate."""

    commands: tuple[tuple[str, ...], ...]
    timeout: float | None = None  # None: recovery default (SERVICE_RECOVERY_TIMEOUT_MINUTES)
    verify: VerifyConfig | None = None
    max_attempts: int = d.MAX_ATTEMPTS
    backoff: float = d.BACKOFF
    cooldown: float = d.COOLDOWN
    approval: bool = False  # `approval: required`: each command attempt waits for a human
    approval_timeout: float | None = None  # None: recovery.approval_timeout


@dataclass(frozen=True)
class DiagnosticsRule:
    """A rule's `diagnostics:`: commands and PromQL queries whose output is recorded."""

    commands: tuple[tuple[str, ...], ...] = ()
    queries: tuple[str, ...] = ()
    source: str | None = None  # a prometheus source name; default: the first prometheus source
    timeout: float = d.DIAGNOSTICS_TIMEOUT


@dataclass(frozen=True)
class SecurityRule:
    """A rule's `security:`: which label holds the address to block, and how."""

    ip_label: str = "source_ip"
    block_command: tuple[str, ...] | None = None
    # Block only when the alert's value is at least this; None: whatever the value.
    min_value: float | None = None
    # The annotation that carries the value for alerts without one (Alertmanager's API).
    value_annotation: str | None = None


@dataclass(frozen=True)
class Rule:
    """One `rules:` entry: which alerts it matches and how their incidents are handled."""

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
    """A notification channel (`channels.NAME`) with its kind's typed options."""

    name: str
    type: str
    enabled: bool
    options: Options  # the kind's own record (notify/channels/<kind>.py)
    min_severity: str | None = None
    timeout: float = d.CHANNEL_TIMEOUT
    # messages per second; None: the channel type's default; 0: unlimited
    rate_limit: float | None = None
    disabled_reason: str | None = None

    def secrets(self) -> list[str]:
        """The secret values of this channel, for masking."""
        return self.options.secrets()


@dataclass(frozen=True)
class IncidentsConfig:
    """The `incidents:` section: when incidents resolve, reopen, flap, storm and hold."""

    resolve_after: float = d.RESOLVE_AFTER
    reopen_within: float = d.REOPEN_WITHIN
    flapping_changes: int = d.FLAPPING_CHANGES
    flapping_window: float = d.FLAPPING_WINDOW
    storm_max_new_per_tick: int = d.STORM_MAX_NEW_PER_TICK
    auto_resolve: bool = d.AUTO_RESOLVE
    mass_resolve_min_open: int = d.MASS_RESOLVE_MIN_OPEN
    mass_resolve_max_fraction: float = d.MASS_RESOLVE_MAX_FRACTION
    mass_resolve_hold: float = d.MASS_RESOLVE_HOLD  # 0: the guard is off


@dataclass(frozen=True)
class DefaultsConfig:
    """The `defaults:` section: the severity and channels of rules that name none."""

    severity: str = d.SEVERITY
    notify: tuple[str, ...] = ()


@dataclass(frozen=True)
class AnomalyConfig:
    """The `anomaly:` section: the journeys file and the three checks' thresholds."""

    journeys: str | None = None  # absolute path
    window: int = d.ANOMALY_WINDOW
    fail_threshold: float = d.FAIL_THRESHOLD
    p95_factor: float = d.P95_FACTOR
    consecutive_failures: int = d.CONSECUTIVE_FAILURES


@dataclass(frozen=True)
class RecoveryConfig:
    """The `recovery:` section: whether and how fixes run, for every rule."""

    enabled: bool = d.RECOVERY_ENABLED
    max_concurrent: int = d.MAX_CONCURRENT
    default_timeout: float = d.RECOVERY_TIMEOUT
    env_passthrough: tuple[str, ...] = ()  # variables a command gets besides the minimal set
    approval: bool = d.APPROVAL_REQUIRED  # RECOVERY_APPROVAL=required: every rule's commands
    approval_timeout: float = d.APPROVAL_TIMEOUT
    breaker: BreakerConfig | None = field(default_factory=lambda: BreakerConfig())  # None: off


@dataclass(frozen=True)
class BreakerConfig:
    """`recovery.breaker`: no command or block_ip starts while it is open."""

    max_actions: int = d.BREAKER_MAX_ACTIONS  # started within `within`, across all rules
    within: float = d.BREAKER_WITHIN
    max_incidents: int = d.BREAKER_MAX_INCIDENTS  # open at once with a fix still planned
    auto_reset: bool = d.BREAKER_AUTO_RESET


@dataclass(frozen=True)
class SecurityConfig:
    """The `security:` section: automatic blocks and what is never blocked."""

    auto_block: bool = d.AUTO_BLOCK
    auto_escalate: bool = d.AUTO_ESCALATE
    never_block: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = d.NEVER_BLOCK
    max_blocks_per_tick: int = d.MAX_BLOCKS_PER_TICK


@dataclass(frozen=True)
class LogConfig:
    """The `log:` section: the event log file and its format."""

    file: str  # absolute path
    format: str = "json"


@dataclass(frozen=True)
class Config:
    """The whole loaded configuration: the file, the built-ins and the environment, merged."""

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
    host: str = "localhost"  # INCIDENT_HOSTNAME, else the machine's hostname
    env: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    # state.password_file's content: the PostgreSQL password when the URL has none.
    db_password: str | None = field(default=None, repr=False)
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

    def syncing_channels(self) -> list[ChannelConfig]:
        """The enabled channels whose acks and resolves `sync` reads back."""
        return [c for c in self.channels.values() if c.enabled and c.options.reads_back()]

    def secrets(self) -> list[str]:
        """Every secret value in the config, for masking anything printed or stored."""
        return [v for v in self.secret_values() if len(v) >= 4]

    def secret_values(self) -> list[str]:
        """Every secret value in the config, however short."""
        values: list[str] = []
        for channel in self.channels.values():
            values.extend(channel.secrets())
        for source in self.sources.values():
            values.extend(v for v in (source.password, source.bearer_token) if v)
        if self.db_password:
            values.append(self.db_password)
        if "@" in self.db_path:
            from urllib.parse import unquote, urlsplit

            with contextlib.suppress(ValueError):
                url_password = urlsplit(self.db_path).password
                if url_password:
                    values.extend({url_password, unquote(url_password)})
        return values


@dataclass(frozen=True)
class AppliedOverride:
    """An environment variable that replaced a value of the file (or of the built-ins)."""

    variable: str
    key: str
    text: str  # the variable's value as set
    value: Any
    replaced: Any  # what the file (or its default) said
