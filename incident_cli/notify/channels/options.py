"""A channel kind's options as a typed record: which keys it reads, which are secrets or
required, its defaults and its built-in channel from the environment (`config` only reads it)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from incident_cli.redact import MASK

FieldKind = Literal["text", "url", "flag", "port", "addresses", "mapping"]


@dataclass(frozen=True)
class EnvDefaults:
    """The built-in channel made from environment variables, when every `when` one is set.
    `yaml` is the channel's mapping as a rule file would write it."""

    when: tuple[str, ...]
    yaml: Mapping[str, str]

    def variables(self) -> tuple[str, ...]:
        """Every variable this channel reads: the `when` ones and every ${VAR} in `yaml`."""
        named = [m.group(1) for v in self.yaml.values() for m in re.finditer(r"\$\{(\w+)", v)]
        return tuple(dict.fromkeys([*self.when, *named]))


@dataclass(frozen=True)
class FieldSpec:
    """How `config` reads one option: its YAML key and kind, and what the kind declares."""

    name: str  # the attribute
    key: str  # the YAML key
    kind: FieldKind
    secret: bool
    required: bool
    fallback: Any  # used when the key is absent or empty
    env: str | None = None  # a secret read from this environment variable when absent


def _field(
    kind: FieldKind,
    *,
    key: str | None = None,
    secret: bool = False,
    required: bool = False,
    fallback: Any = None,
    default: Any = None,
    env: str | None = None,
) -> Any:
    meta = {
        "kind": kind,
        "key": key,
        "secret": secret,
        "required": required,
        "fallback": fallback,
        "env": env,
    }
    if isinstance(default, dict):
        return dataclasses.field(default_factory=dict, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def text(
    *,
    key: str | None = None,
    required: bool = False,
    secret: bool = False,
    fallback: str | None = None,
    env: str | None = None,
) -> Any:
    """A text option (None when unset); `key` when the YAML key is not the attribute name;
    `env`: the environment variable a secret is read from when neither key nor file is given."""
    return _field("text", key=key, secret=secret, required=required, fallback=fallback, env=env)


def url(*, secret: bool = False, required: bool = False, fallback: str | None = None) -> Any:
    """An http(s) URL; a secret one (a Slack webhook) is masked everywhere."""
    return _field("url", secret=secret, required=required, fallback=fallback)


def flag() -> Any:
    return _field("flag", default=False)


def port() -> Any:
    """A TCP port; 0 until the kind picks its default."""
    return _field("port", default=0)


def addresses(*, required: bool = False) -> Any:
    """One address or a list of them."""
    return _field("addresses", required=required, default=())


def mapping(*, secret_values: bool = False) -> Any:
    """A mapping of text to text; with `secret_values` every value is a secret."""
    return _field("mapping", secret=secret_values, default={})


@dataclass(frozen=True)
class Options:
    """The base of every kind's options. A subclass declares its fields with the helpers above;
    the declaration is what `config` reads, masks and checks."""

    ENV: ClassVar[EnvDefaults | None] = None
    # A storm is summed up in one message per channel; False: this kind is not told at all.
    posts_storms: ClassVar[bool] = True
    # A notice about many incidents that needs no answer (the mass-resolve guard's hold);
    # False for the kinds that page or publish, where nothing would ever resolve it.
    posts_notices: ClassVar[bool] = True

    @classmethod
    def specs(cls) -> tuple[FieldSpec, ...]:
        return tuple(
            FieldSpec(
                name=f.name,
                key=f.metadata.get("key") or f.name,
                kind=f.metadata["kind"],
                secret=f.metadata["secret"],
                required=f.metadata["required"],
                fallback=f.metadata["fallback"],
                env=f.metadata.get("env"),
            )
            for f in dataclasses.fields(cls)
        )

    @classmethod
    def secret_keys(cls) -> tuple[str, ...]:
        """The YAML keys holding secrets (each may also be read from `<key>_file`)."""
        return tuple(s.key for s in cls.specs() if s.secret and s.kind != "mapping")

    @classmethod
    def required_keys(cls) -> tuple[str, ...]:
        """The keys that must not be empty: an empty one disables the channel."""
        return tuple(s.key for s in cls.specs() if s.required)

    def value(self, key: str) -> Any:
        """The option under its YAML key."""
        spec = next(s for s in self.specs() if s.key == key)
        return getattr(self, spec.name)

    def missing(self) -> list[str]:
        """The required keys left empty: any one disables the channel."""
        return [k for k in self.required_keys() if not self.value(k)]

    def completed(self) -> Options:
        """With the defaults that depend on other options filled in."""
        return self

    def problem(self) -> tuple[str | None, str] | None:
        """A check across options: (the key it is about, or None for the channel; the problem)."""
        return None

    def reads_back(self) -> bool:
        """Whether `sync` reads acks and resolves back from this channel."""
        return False

    def secrets(self) -> list[str]:
        """The secret values, for masking anything printed or stored."""
        values: list[str] = []
        for spec in self.specs():
            value = getattr(self, spec.name)
            if not spec.secret or not value:
                continue
            if spec.kind == "mapping":
                values.extend(str(v) for v in value.values() if v)
            else:
                values.append(str(value))
        return values

    def shown(self) -> dict[str, Any]:
        """For `config show`: every option under its key, secrets masked."""
        out: dict[str, Any] = {}
        for spec in self.specs():
            value = getattr(self, spec.name)
            if spec.secret and spec.kind == "mapping":
                out[spec.key] = {name: MASK for name in value or {}}
            elif spec.secret:
                out[spec.key] = MASK if value else ""
            elif isinstance(value, tuple):
                out[spec.key] = list(value)
            elif isinstance(value, Mapping):
                out[spec.key] = dict(value)
            else:
                out[spec.key] = value
        return out

    def endpoint(self) -> str:
        """Where the channel sends, for `incident test`: a host, never a secret."""
        return ""


def host_of(value: str | None) -> str:
    """The host of a URL (never its path or credentials)."""
    from urllib.parse import urlsplit

    if not value:
        return ""
    return urlsplit(str(value)).hostname or "?"
