"""Matching alerts to rules, and the incident key, labels, title and severity a rule gives an
alert or a group of alerts."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from incident_cli.config.model import DEFAULT_RULE, Config, Rule, severity_rank
from incident_cli.models import alert_severity, incident_name

MAX_KEY_CHARS = 512
MAX_TITLE_CHARS = 200
MAX_TITLE_VALUE_CHARS = 80
# Labels an ungrouped incident's title names first, when it has them.
_TITLE_LABELS = ("service", "journey", "instance", "job", "source")


# Severity label values other rule sets use, as the severity they mean.
@dataclass(frozen=True)
class Routed:
    """Where an alert goes: its rule, the key of its incident, severity, title and labels."""

    rule: Rule
    key: str
    severity: str
    title: str
    labels: Mapping[str, str]


def match_rule(rules: tuple[Rule, ...], labels: Mapping[str, str]) -> Rule:
    """The first rule whose every matcher matches; the `default` rule when none does."""
    for rule in rules:
        if rule.matches(labels):
            return rule
    return DEFAULT_RULE


def incident_key(rule: Rule, labels: Mapping[str, str]) -> str:
    """`<rule>:<label>=<value>,...` over group_by (default: every label), sorted by label name.

    Very long keys (hostile or huge label values) are shortened with a hash so the key stays
    unique but bounded.
    """
    names = sorted(rule.group_by) if rule.group_by is not None else sorted(labels)
    key = (
        rule.name
        + ":"
        + ",".join([f"{_escaped_name(n)}={_escape(labels.get(n, ''))}" for n in names])
    )
    if len(key) > MAX_KEY_CHARS:
        import hashlib  # OpenSSL's: not for a tick that routes no alert

        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:24]
        key = key[: MAX_KEY_CHARS - 30] + "…#" + digest
    return key


def _escape(value: str) -> str:
    # `,` and `=` separate the key's parts: escape them so that {instance: "db1,mount=/"}
    # and {instance: db1, mount: /} cannot share an incident.
    if "\\" in value or "," in value or "=" in value:
        return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")
    return value


# Label names are few and repeat on every alert: each is escaped once.
_escaped_name = functools.lru_cache(maxsize=4096)(lambda name: _escape(name))


def severity_for(rule: Rule, labels: Mapping[str, str], default: str) -> str:
    """The rule's fixed severity, else the alert's own."""
    return rule.severity or alert_severity(labels, default)


def group_severity(rule: Rule, alerts: Iterable[Mapping[str, str]], default: str) -> str:
    """The rule's fixed severity, else the highest among the alerts (info < warning < error <
    critical)."""
    if rule.severity:
        return rule.severity
    return max(
        (alert_severity(labels, default) for labels in alerts), key=severity_rank, default=default
    )


def shared_labels(rule: Rule, labels: Mapping[str, str]) -> dict[str, str]:
    """The labels every alert of an incident shares: its `group_by` labels (empty ones are
    absent, as in Prometheus), or all of them for a rule that does not group."""
    if rule.group_by is None:
        return dict(labels)
    return {n: labels[n] for n in rule.group_by if labels.get(n)}


def title_for(rule: Rule, labels: Mapping[str, str]) -> str:
    """`<name>: <what tells it apart>` from an incident's shared labels: the `group_by` values
    other than alertname, in the rule's order; for a rule that does not group, every label but
    alertname and severity (service, journey, instance, job, source first). One value is shown
    bare, several as `label=value`."""
    parts = [
        (n, v if len(v) <= MAX_TITLE_VALUE_CHARS else _clip_value(v))
        for n in _title_names(rule.group_by, tuple(labels))
        if (v := labels.get(n))
    ]
    name = incident_name(labels, rule.name)
    if not parts:
        title = name
    elif len(parts) == 1:
        title = f"{name}: {parts[0][1]}"
    else:
        title = f"{name}: " + ", ".join(f"{n}={v}" for n, v in parts)
    if len(title) > MAX_TITLE_CHARS:
        title = title[: MAX_TITLE_CHARS - 1] + "…"
    return title


@functools.lru_cache(maxsize=1024)
def _title_names(group_by: tuple[str, ...] | None, names: tuple[str, ...]) -> tuple[str, ...]:
    """The label names a title shows, in order, for a rule's group_by and an incident's
    label names (a storm's incidents share a few sets of names: worked out once each)."""
    if group_by is not None:
        shown = [n for n in group_by if n != "alertname"]
    else:
        rest = sorted(n for n in names if n not in ("alertname", "severity"))
        shown = [n for n in _TITLE_LABELS if n in names]
        shown += [n for n in rest if n not in _TITLE_LABELS]
    return tuple(dict.fromkeys(shown))


def _clip_value(value: str) -> str:
    if len(value) <= MAX_TITLE_VALUE_CHARS:
        return value
    return value[: MAX_TITLE_VALUE_CHARS - 1] + "…"


def route(config: Config, labels: Mapping[str, str]) -> Routed:
    rule = match_rule(config.rules, labels)
    return routed_by(config, rule, incident_key(rule, labels), labels)


def routed_by(
    config: Config,
    rule: Rule,
    key: str,
    labels: Mapping[str, str],
    severity: str | None = None,
) -> Routed:
    """The route of one alert whose rule and key are already known (a poll groups by key
    first). Its severity is `severity` when given (a group's: `group_severity`), else that
    alert's."""
    shared = shared_labels(rule, labels)
    return Routed(
        rule=rule,
        key=key,
        severity=severity or severity_for(rule, labels, config.defaults.severity),
        title=title_for(rule, shared),
        labels=shared,
    )
