"""What a recovery command is given: argv from a template (no shell) and a minimal environment."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence

from incident_cli.models import Incident

SAFE_VALUE = re.compile(r"[A-Za-z0-9_.:@/+=-]+")

PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")

MAX_SUBSTITUTED_CHARS = 1024  # a label value longer than this never becomes an argument

MAX_ENV_VALUE_BYTES = 32768  # execve refuses single strings over 128 KiB

LABEL_ENV_BUDGET = 65536  # bytes of INCIDENT_LABEL_* one command gets, in all (ARG_MAX is shared)

ENV_KEPT = ("PATH", "HOME", "LANG", "TZ")  # of the tick's environment, besides INCIDENT_*


class Refused(Exception):
    """A label value may not become part of a command line."""

    def __init__(self, label: str, reason: str) -> None:
        super().__init__(f"label {label!r} {reason}")
        self.label = label
        self.reason = reason


def unsafe_reason(value: str) -> str | None:
    """Why `value` may not be substituted into an argv item, or None when it may."""
    if not value:
        return "is empty"
    if len(value) > MAX_SUBSTITUTED_CHARS:
        return f"is {len(value)} characters long (at most {MAX_SUBSTITUTED_CHARS})"
    if value.startswith("-"):
        return "starts with '-' (it could be read as an option)"
    if SAFE_VALUE.fullmatch(value) is None:
        bad = next(ch for ch in value if SAFE_VALUE.fullmatch(ch) is None)
        return f"contains {bad!r}, which is not in [A-Za-z0-9_.:@/+=-]"
    return None


def render_argv(
    template: Sequence[str],
    labels: Mapping[str, str],
    extra: Mapping[str, str] | None = None,
) -> list[str]:
    """The argv with each `{name}` replaced by that label's value, each item staying one
    argument. Raises Refused when a value is missing or unsafe (see `unsafe_reason`)."""
    values = {**labels, **(extra or {})}

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise Refused(name, "is not set on the alert")
        problem = unsafe_reason(values[name])
        if problem is not None:
            raise Refused(name, problem)
        return values[name]

    return [PLACEHOLDER.sub(substitute, item) for item in template]


def env_name(label: str) -> str:
    return "INCIDENT_LABEL_" + re.sub(r"[^A-Z0-9_]", "_", label.upper())


def _env_value(value: str) -> str:
    # Environment strings cannot hold NUL or lone surrogates, and execve caps each one's size.
    clean = value.encode("utf-8", "replace").decode("utf-8").replace("\0", "")
    return clean.encode("utf-8")[:MAX_ENV_VALUE_BYTES].decode("utf-8", "ignore")


def _env_size(name: str, value: str) -> int:
    return len(name.encode("utf-8")) + len(value.encode("utf-8")) + 2  # "NAME=value\0"


def label_env(labels: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """Every label as INCIDENT_LABEL_<NAME>, within LABEL_ENV_BUDGET bytes in all: the smallest
    first, so that one huge label cannot crowd out the ordinary ones. Returns the variables and
    the names of the labels left out."""
    by_var: dict[str, tuple[str, str]] = {}
    # Two labels can sanitise to one name (`a-b`, `a_b`); sorted order makes the winner stable.
    for name, value in sorted(labels.items()):
        by_var[env_name(name)] = (name, _env_value(value))
    env: dict[str, str] = {}
    left_out: list[str] = []
    used = 0
    for var, (name, value) in sorted(
        by_var.items(), key=lambda i: (_env_size(i[0], i[1][1]), i[0])
    ):
        size = _env_size(var, value)
        if used + size > LABEL_ENV_BUDGET:
            left_out.append(name)
            continue
        env[var] = value
        used += size
    return env, sorted(left_out)


# Variables whose name says they hold a secret, or a URL (which may carry credentials).
_SECRET_NAME = re.compile(r"PASSW|TOKEN|SECRET|KEY|CREDENTIAL|AUTH|WEBHOOK|URL|DSN", re.I)

_URL_USERINFO = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*@")


def base_env(
    environ: Mapping[str, str], passthrough: Sequence[str], secrets: Sequence[str]
) -> dict[str, str]:
    """The environment a command starts from: PATH, HOME, LANG, TZ, the INCIDENT_* variables
    that hold no secret, and what `recovery.env_passthrough` names. Nothing else: the tick's
    own environment holds channel secrets (SLACK_WEBHOOK_URL, ...) a command has no use for."""
    env = {k: environ[k] for k in ENV_KEPT if k in environ}
    env.setdefault("PATH", os.defpath)
    for name, value in environ.items():
        if (
            name.startswith("INCIDENT_")
            and not name.startswith("INCIDENT_LABEL_")
            and _SECRET_NAME.search(name[len("INCIDENT_") :]) is None
            and _URL_USERINFO.search(value) is None
            and not any(secret in value for secret in secrets)
        ):
            env[name] = value
    env.update({k: environ[k] for k in passthrough if k in environ})
    return env


def command_env(
    base: Mapping[str, str], incident: Incident, extra: Mapping[str, str] | None = None
) -> tuple[dict[str, str], list[str]]:
    """The environment of a command: `base` (see base_env), plus the labels as
    INCIDENT_LABEL_<NAME> within the budget (see label_env) and the incident's identity.
    Returns it and the names of the labels left out."""
    env = {k: v for k, v in base.items() if not k.startswith("INCIDENT_LABEL_")}
    labels, left_out = label_env(incident.labels)
    env.update(labels)
    env.update(
        {
            "INCIDENT_ID": str(incident.id),
            "INCIDENT_RULE": incident.rule,
            "INCIDENT_SEVERITY": incident.severity,
            "INCIDENT_KEY": _env_value(incident.key),
        }
    )
    env.update(extra or {})
    return env, left_out
