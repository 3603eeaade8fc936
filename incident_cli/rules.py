"""Matching alerts to rules, and the incident key, title and severity a rule gives an alert."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from incident_cli.config import DEFAULT_RULE, SEVERITIES, Config, Rule

MAX_KEY_CHARS = 512
MAX_TITLE_CHARS = 200
_TITLE_LABELS = ("service", "journey", "instance", "job", "source")


@dataclass(frozen=True)
class Routed:
    rule: Rule
    key: str
    severity: str
    title: str


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
    key = rule.name + ":" + ",".join(f"{_escape(n)}={_escape(labels.get(n, ''))}" for n in names)
    if len(key) > MAX_KEY_CHARS:
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:24]
        key = key[: MAX_KEY_CHARS - 30] + "…#" + digest
    return key


def _escape(value: str) -> str:
    # `,` and `=` separate the key's parts: escape them so that {instance: "db1,mount=/"}
    # and {instance: db1, mount: /} cannot share an incident.
    if "\\" in value or "," in value or "=" in value:
        return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")
    return value


def severity_for(rule: Rule, labels: Mapping[str, str], default: str) -> str:
    if rule.severity:
        return rule.severity
    label = labels.get("severity", "").lower()
    if label in SEVERITIES:
        return label
    return default


def title_for(labels: Mapping[str, str]) -> str:
    name = labels.get("alertname") or "alert"
    detail = next((labels[n] for n in _TITLE_LABELS if labels.get(n)), "")
    title = f"{name}: {detail}" if detail else name
    if len(title) > MAX_TITLE_CHARS:
        title = title[: MAX_TITLE_CHARS - 1] + "…"
    return title


def route(config: Config, labels: Mapping[str, str]) -> Routed:
    rule = match_rule(config.rules, labels)
    return routed_by(config, rule, incident_key(rule, labels), labels)


def routed_by(config: Config, rule: Rule, key: str, labels: Mapping[str, str]) -> Routed:
    """The route of labels whose rule and key are already known (a poll groups by key first)."""
    return Routed(
        rule=rule,
        key=key,
        severity=severity_for(rule, labels, config.defaults.severity),
        title=title_for(labels),
    )
