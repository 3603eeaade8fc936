"""One reader per section of the rule file (sources, rules, incidents, anomaly, recovery, ...)."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path

from incident_cli.config import defaults as d
from incident_cli.config.model import (
    SOURCE_TYPES,
    AnomalyConfig,
    BreakerConfig,
    ChannelConfig,
    DefaultsConfig,
    DiagnosticsRule,
    IncidentsConfig,
    LogConfig,
    Matcher,
    RecoveryConfig,
    RecoveryRule,
    Rule,
    SecurityConfig,
    SecurityRule,
    SourceConfig,
    VerifyConfig,
)
from incident_cli.config.reader import Reader, describe
from incident_cli.config.yamlraw import Raw, Scalar
from incident_cli.models import SEVERITIES
from incident_cli.redact import mask_userinfo


def read_sources(r: Reader, raw: Raw | None) -> dict[str, SourceConfig]:
    out: dict[str, SourceConfig] = {}
    for name, item in r.free_mapping("sources", raw).items():
        path = f"sources.{name}"
        if not isinstance(item, dict):
            raise r.fail(path, f"expected a mapping, got {describe(item)}")
        s = r.mapping(
            path,
            item,
            (
                "type",
                "url",
                "urls",
                "timeout",
                "basic_auth",
                "bearer_token",
                "bearer_token_file",
                "ca_file",
                "insecure_skip_verify",
                "require_alert",
                "max_alerts",
                "history_url",
            ),
        )
        kind = r.text(f"{path}.type", s.get("type"))
        if kind not in SOURCE_TYPES:
            raise r.fail(
                f"{path}.type", f"unknown source type {kind!r} (known: {', '.join(SOURCE_TYPES)})"
            )
        urls = _source_urls(r, path, s)
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
        timeout = r.duration(f"{path}.timeout", s.get("timeout"), d.SOURCE_TIMEOUT)
        if timeout <= 0:
            raise r.fail(f"{path}.timeout", "must be more than 0s")
        out[name] = SourceConfig(
            name=name,
            type=kind,
            url=urls[0],
            urls=urls if "urls" in s else (),
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
                f"{path}.max_alerts", s.get("max_alerts"), d.MAX_ALERTS, minimum=1
            ),
            history_url=_history_url(r, path, s),
        )
    return out


def _history_url(r: Reader, path: str, s: Mapping[str, Raw]) -> str | None:
    """`history_url`: the Prometheus whose ALERTS series `incident replay` reads for this
    source (for an Alertmanager, the Prometheus behind it). Same credentials as the source."""
    if s.get("history_url") is None:
        return None
    url = r.text(f"{path}.history_url", s["history_url"], allow_empty=False).rstrip("/")
    if not re.match(r"^https?://[^\s/]+", url):
        raise r.fail(
            f"{path}.history_url",
            f"expected an http:// or https:// URL, got {mask_userinfo(url)!r}",
        )
    return url


def _source_urls(r: Reader, path: str, s: Mapping[str, Raw]) -> tuple[str, ...]:
    """A source's `url`, or its replicas' `urls` (one of the two), each an http(s) URL."""
    if ("url" in s) == ("urls" in s):
        raise r.fail(path, "needs either url or urls (a list of its replicas' URLs), not both")
    if "url" in s:
        pairs = [(f"{path}.url", r.text(f"{path}.url", s.get("url"), allow_empty=False))]
    else:
        texts = r.texts(f"{path}.urls", s.get("urls"))
        if not texts:
            raise r.fail(f"{path}.urls", "expected a non-empty list of URLs")
        pairs = [(f"{path}.urls[{i}]", text) for i, text in enumerate(texts)]
    urls: list[str] = []
    for key, text in pairs:
        url = text.rstrip("/")
        if not re.match(r"^https?://[^\s/]+", url):
            raise r.fail(key, f"expected an http:// or https:// URL, got {mask_userinfo(url)!r}")
        if url in urls:
            raise r.fail(key, f"{mask_userinfo(url)} is listed twice")
        urls.append(url)
    return tuple(urls)


def read_severity(r: Reader, path: str, raw: Raw | None) -> str | None:
    value = r.opt_text(path, raw)
    if value is None:
        return None
    if value not in SEVERITIES:
        raise r.fail(path, f"unknown severity {value!r} (known: {', '.join(SEVERITIES)})")
    return value


def read_handler_name(r: Reader, path: str, raw: Raw | None) -> str:
    from incident_cli.handlers.registry import check

    name = r.text(path, raw, allow_empty=False) if raw is not None else "default"
    try:
        check(name)
    except ValueError as exc:
        raise r.fail(path, str(exc)) from None
    return name


def read_rules(r: Reader, raw: Raw | None) -> tuple[Rule, ...]:
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
                handler=read_handler_name(r, f"{path}.handler", s.get("handler")),
                severity=read_severity(r, f"{path}.severity", s.get("severity")),
                group_by=None if group_by is None else r.texts(f"{path}.group_by", group_by),
                notify=None if s.get("notify") is None else r.texts(f"{path}.notify", s["notify"]),
                runbook=r.opt_text(f"{path}.runbook", s.get("runbook")),
                recovery=read_recovery_rule(r, f"{path}.recovery", s.get("recovery")),
                diagnostics=read_diagnostics_rule(r, f"{path}.diagnostics", s.get("diagnostics")),
                security=read_security_rule(r, f"{path}.security", s.get("security")),
            )
        )
    return tuple(rules)


def read_recovery_rule(r: Reader, path: str, raw: Raw | None) -> RecoveryRule | None:
    if raw is None:
        return None
    s = r.mapping(
        path,
        raw,
        (
            "commands",
            "timeout",
            "verify",
            "max_attempts",
            "backoff",
            "cooldown",
            "approval",
            "approval_timeout",
        ),
    )
    verify = None
    if s.get("verify") is not None:
        v = r.mapping(f"{path}.verify", s["verify"], ("within", "http"))
        http = r.opt_text(f"{path}.verify.http", v.get("http"))
        if http is not None and not re.match(r"^https?://", http):
            raise r.fail(f"{path}.verify.http", f"expected an http(s) URL, got {http!r}")
        verify = VerifyConfig(
            within=r.duration(f"{path}.verify.within", v.get("within"), d.VERIFY_WITHIN), http=http
        )
    commands = r.argv_list(f"{path}.commands", s.get("commands"))
    if not commands:
        raise r.fail(f"{path}.commands", "needs at least one command")
    return RecoveryRule(
        commands=commands,
        timeout=r.opt_duration(f"{path}.timeout", s.get("timeout")),
        verify=verify,
        max_attempts=r.integer(
            f"{path}.max_attempts", s.get("max_attempts"), d.MAX_ATTEMPTS, minimum=1
        ),
        backoff=r.duration(f"{path}.backoff", s.get("backoff"), d.BACKOFF),
        cooldown=r.duration(f"{path}.cooldown", s.get("cooldown"), d.COOLDOWN),
        approval=read_approval(r, f"{path}.approval", s.get("approval"), False),
        approval_timeout=r.opt_duration(f"{path}.approval_timeout", s.get("approval_timeout")),
    )


def read_approval(r: Reader, path: str, raw: Raw | None, default: bool) -> bool:
    """`approval: required` (a human approves each command attempt) or `none`."""
    if raw is None:
        return default
    value = r.text(path, raw).strip().lower()
    if value not in ("required", "none"):
        raise r.fail(path, f"expected required or none, got {value!r}")
    return value == "required"


def read_diagnostics_rule(r: Reader, path: str, raw: Raw | None) -> DiagnosticsRule | None:
    if raw is None:
        return None
    s = r.mapping(path, raw, ("commands", "queries", "source", "timeout"))
    return DiagnosticsRule(
        commands=r.argv_list(f"{path}.commands", s.get("commands")),
        queries=r.texts(f"{path}.queries", s.get("queries")),
        source=r.opt_text(f"{path}.source", s.get("source")),
        timeout=r.duration(f"{path}.timeout", s.get("timeout"), d.DIAGNOSTICS_TIMEOUT),
    )


def read_security_rule(r: Reader, path: str, raw: Raw | None) -> SecurityRule | None:
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


def check_channel_names(
    r: Reader, path: str, names: tuple[str, ...], channels: Mapping[str, ChannelConfig]
) -> None:
    for i, name in enumerate(names):
        if name not in channels:
            known = ", ".join(channels) or "none configured"
            raise r.fail(f"{path}[{i}]", f"unknown channel {name!r} (channels: {known})")


def read_state(r: Reader, raw: Raw | None) -> tuple[str, str | None]:
    """The state DB: its path (relative to the config file's directory) or a postgresql:// URL,
    and the password `state.password_file` holds (for a URL without one)."""
    state = r.mapping("state", raw, ("db", "password_file"))
    db_name = (
        r.text("state.db", state["db"], allow_empty=False) if "db" in state else d.DEFAULT_DB_NAME
    )
    password = (
        r.secret("state", {"password_file": state["password_file"]}, "password")
        if ("password_file" in state)
        else None
    )
    if db_name.startswith(("postgresql://", "postgres://")):
        return db_name, password
    return str(Path(r.base_dir, db_name)), password


def read_incidents(r: Reader, raw: Raw | None) -> IncidentsConfig:
    inc = r.mapping(
        "incidents",
        raw,
        (
            "resolve_after",
            "reopen_within",
            "flapping",
            "storm",
            "auto_resolve",
            "mass_resolve_guard",
        ),
    )
    flap = r.mapping("incidents.flapping", inc.get("flapping"), ("changes", "window"))
    storm = r.mapping("incidents.storm", inc.get("storm"), ("max_new_per_tick",))
    guard = r.mapping(
        "incidents.mass_resolve_guard",
        inc.get("mass_resolve_guard"),
        ("min_open", "max_fraction", "hold"),
    )
    max_fraction = r.number(
        "incidents.mass_resolve_guard.max_fraction",
        guard.get("max_fraction"),
        d.MASS_RESOLVE_MAX_FRACTION,
    )
    if max_fraction > 1:
        raise r.fail(
            "incidents.mass_resolve_guard.max_fraction",
            f"must be a fraction between 0 and 1, not {max_fraction:g}",
        )
    return IncidentsConfig(
        resolve_after=r.duration(
            "incidents.resolve_after", inc.get("resolve_after"), d.RESOLVE_AFTER
        ),
        reopen_within=r.duration(
            "incidents.reopen_within", inc.get("reopen_within"), d.REOPEN_WITHIN
        ),
        flapping_changes=r.integer(
            "incidents.flapping.changes", flap.get("changes"), d.FLAPPING_CHANGES, 1
        ),
        flapping_window=r.duration(
            "incidents.flapping.window", flap.get("window"), d.FLAPPING_WINDOW
        ),
        storm_max_new_per_tick=r.integer(
            "incidents.storm.max_new_per_tick",
            storm.get("max_new_per_tick"),
            d.STORM_MAX_NEW_PER_TICK,
            1,
        ),
        auto_resolve=r.boolean("incidents.auto_resolve", inc.get("auto_resolve"), d.AUTO_RESOLVE),
        mass_resolve_min_open=r.integer(
            "incidents.mass_resolve_guard.min_open",
            guard.get("min_open"),
            d.MASS_RESOLVE_MIN_OPEN,
            1,
        ),
        mass_resolve_max_fraction=max_fraction,
        mass_resolve_hold=r.duration(
            "incidents.mass_resolve_guard.hold", guard.get("hold"), d.MASS_RESOLVE_HOLD
        ),
    )


def read_defaults(
    r: Reader, raw: Raw | None, channels: Mapping[str, ChannelConfig], *, builtin: bool
) -> DefaultsConfig:
    defaults_raw = r.mapping("defaults", raw, ("severity", "notify"))
    if "notify" in defaults_raw:
        default_notify = r.texts("defaults.notify", defaults_raw["notify"])
    elif builtin:
        default_notify = tuple(channels)
    else:
        default_notify = ("slack",) if "slack" in channels else ()
    defaults = DefaultsConfig(
        severity=read_severity(r, "defaults.severity", defaults_raw.get("severity")) or d.SEVERITY,
        notify=default_notify,
    )
    check_channel_names(r, "defaults.notify", defaults.notify, channels)
    return defaults


def check_rule_references(
    r: Reader,
    rules: tuple[Rule, ...],
    sources: Mapping[str, SourceConfig],
    channels: Mapping[str, ChannelConfig],
) -> None:
    """The channels and diagnostics sources the rules name exist."""
    for i, rule in enumerate(rules):
        if rule.notify is not None:
            check_channel_names(r, f"rules[{i}].notify", rule.notify, channels)
        if rule.diagnostics and rule.diagnostics.source:
            src = sources.get(rule.diagnostics.source)
            if src is None or src.type != "prometheus":
                raise r.fail(
                    f"rules[{i}].diagnostics.source",
                    f"{rule.diagnostics.source!r} is not a configured prometheus source",
                )


def read_escalation(
    r: Reader, raw: Raw | None, channels: Mapping[str, ChannelConfig]
) -> tuple[str, ...]:
    esc = r.mapping("escalation", raw, ("channels",))
    escalation_channels = r.texts("escalation.channels", esc.get("channels"))
    check_channel_names(r, "escalation.channels", escalation_channels, channels)
    return escalation_channels


def read_anomaly(r: Reader, raw: Raw | None) -> AnomalyConfig:
    an = r.mapping(
        "anomaly",
        raw,
        ("journeys", "window", "fail_threshold", "p95_factor", "consecutive_failures"),
    )
    journeys = r.opt_text("anomaly.journeys", an.get("journeys"))
    anomaly = AnomalyConfig(
        journeys=str(Path(r.base_dir, journeys)) if journeys else None,
        window=r.integer("anomaly.window", an.get("window"), d.ANOMALY_WINDOW, 1),
        fail_threshold=r.number(
            "anomaly.fail_threshold", an.get("fail_threshold"), d.FAIL_THRESHOLD
        ),
        p95_factor=r.number("anomaly.p95_factor", an.get("p95_factor"), d.P95_FACTOR),
        consecutive_failures=r.integer(
            "anomaly.consecutive_failures",
            an.get("consecutive_failures"),
            d.CONSECUTIVE_FAILURES,
            1,
        ),
    )
    if anomaly.fail_threshold > 1:
        raise r.fail("anomaly.fail_threshold", "is a fraction between 0 and 1")
    return anomaly


def read_recovery(r: Reader, raw: Raw | None) -> RecoveryConfig:
    rec = r.mapping(
        "recovery",
        raw,
        (
            "enabled",
            "max_concurrent",
            "timeout",
            "env_passthrough",
            "approval",
            "approval_timeout",
            "breaker",
        ),
    )
    passthrough = r.texts("recovery.env_passthrough", rec.get("env_passthrough"))
    for i, name in enumerate(passthrough):
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise r.fail(f"recovery.env_passthrough[{i}]", f"{name!r} is not a variable name")
    return RecoveryConfig(
        enabled=r.boolean("recovery.enabled", rec.get("enabled"), d.RECOVERY_ENABLED),
        max_concurrent=r.integer(
            "recovery.max_concurrent", rec.get("max_concurrent"), d.MAX_CONCURRENT, 1
        ),
        default_timeout=r.duration("recovery.timeout", rec.get("timeout"), d.RECOVERY_TIMEOUT),
        env_passthrough=tuple(passthrough),
        approval=read_approval(r, "recovery.approval", rec.get("approval"), d.APPROVAL_REQUIRED),
        approval_timeout=r.duration(
            "recovery.approval_timeout", rec.get("approval_timeout"), d.APPROVAL_TIMEOUT
        ),
        breaker=read_breaker(r, rec.get("breaker")),
    )


def read_breaker(r: Reader, raw: Raw | None) -> BreakerConfig | None:
    """`recovery.breaker`: a mapping, or `false`/`off` to turn the guard off."""
    if isinstance(raw, Scalar) and raw.tag != "null":
        if r.boolean("recovery.breaker", raw, True):
            return BreakerConfig()
        return None
    b = r.mapping("recovery.breaker", raw, ("max_actions", "within", "max_incidents", "auto_reset"))
    within = r.duration("recovery.breaker.within", b.get("within"), d.BREAKER_WITHIN)
    if within <= 0:
        raise r.fail("recovery.breaker.within", "must be longer than 0s")
    return BreakerConfig(
        max_actions=r.integer(
            "recovery.breaker.max_actions", b.get("max_actions"), d.BREAKER_MAX_ACTIONS, 1
        ),
        within=within,
        max_incidents=r.integer(
            "recovery.breaker.max_incidents", b.get("max_incidents"), d.BREAKER_MAX_INCIDENTS, 1
        ),
        auto_reset=r.boolean(
            "recovery.breaker.auto_reset", b.get("auto_reset"), d.BREAKER_AUTO_RESET
        ),
    )


def read_security(r: Reader, raw: Raw | None) -> SecurityConfig:
    sec = r.mapping(
        "security", raw, ("auto_block", "auto_escalate", "never_block", "max_blocks_per_tick")
    )
    nb_raw = sec.get("never_block")
    never_block = d.NEVER_BLOCK
    if nb_raw is not None:
        networks = []
        for i, text in enumerate(r.texts("security.never_block", nb_raw)):
            try:
                networks.append(ipaddress.ip_network(text, strict=False))
            except ValueError as exc:
                raise r.fail(f"security.never_block[{i}]", str(exc)) from None
        never_block = tuple(networks)
    return SecurityConfig(
        auto_block=r.boolean("security.auto_block", sec.get("auto_block"), d.AUTO_BLOCK),
        auto_escalate=r.boolean(
            "security.auto_escalate", sec.get("auto_escalate"), d.AUTO_ESCALATE
        ),
        never_block=never_block,
        max_blocks_per_tick=r.integer(
            "security.max_blocks_per_tick", sec.get("max_blocks_per_tick"), d.MAX_BLOCKS_PER_TICK, 0
        ),
    )


def read_log(r: Reader, raw: Raw | None) -> LogConfig | None:
    log_raw = r.mapping("log", raw, ("file", "format"))
    if not log_raw:
        return None
    if "file" not in log_raw:
        raise r.fail("log.file", "is required when log is set")
    log_file = r.text("log.file", log_raw["file"])  # empty (an unset ${VAR:-}): no log
    log_format = r.text("log.format", log_raw["format"]) if "format" in log_raw else "json"
    if log_format != "json":
        raise r.fail("log.format", f"unknown format {log_format!r} (allowed: json)")
    if not log_file:
        return None
    return LogConfig(file=str(Path(r.base_dir, log_file)), format=log_format)


def read_links(r: Reader, raw: Raw | None) -> str | None:
    links = r.mapping("links", raw, ("grafana",))
    return r.opt_text("links.grafana", links.get("grafana")) or None
