"""Loading the rule file: read, expand, validate, apply the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from incident_cli.config.channels import read_channels
from incident_cli.config.defaults import BUILTIN, BUILTIN_YAML, CONFIG_VAR, DEFAULT_CONFIG_NAME
from incident_cli.config.env import apply_env_overrides, builtin_channels, host_name, to_raw
from incident_cli.config.model import Config
from incident_cli.config.reader import Reader
from incident_cli.config.sections import (
    check_rule_references,
    read_anomaly,
    read_defaults,
    read_escalation,
    read_incidents,
    read_links,
    read_log,
    read_recovery,
    read_rules,
    read_security,
    read_sources,
    read_state,
)
from incident_cli.config.yamlraw import Raw, RawYAMLError, load_raw
from incident_cli.errors import ConfigError

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


def resolve_config_path(explicit: str | None, env: Mapping[str, str]) -> tuple[Path, bool]:
    """The config path and whether the user named it (a named file must exist)."""
    if explicit:
        return Path(explicit), True
    if env.get(CONFIG_VAR):
        return Path(env[CONFIG_VAR]), True
    return Path(DEFAULT_CONFIG_NAME), False


def load_config(
    path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    *,
    must_exist: bool = True,
    cache: Path | None = None,
) -> Config:
    """Load, expand and validate the config; with no file (and must_exist False) the built-ins.
    With `cache` (a file beside the state DB), the file's parsed YAML is kept there and reused
    while the file is unchanged (config/cache.py)."""
    env = dict(os.environ if env is None else env)
    if path is None:
        config_path, must_exist = resolve_config_path(None, env)
    else:
        config_path = Path(path)
    key, hit = None, False
    if config_path.exists() or must_exist:
        file = str(config_path)
        raw = None
        if cache is not None:
            from incident_cli.config import cache as parsed

            key = parsed.file_key(config_path)  # before reading: a later change is a miss
            raw = parsed.read(cache, key) if key is not None else None
        hit = raw is not None
        if not hit:
            raw = _parse_file(config_path, file)
        base_dir = str(config_path.resolve().parent)
        builtin = False
    else:
        file = BUILTIN
        raw = load_raw(BUILTIN_YAML)
        assert isinstance(raw, dict)
        raw["channels"] = to_raw(builtin_channels(env))
        base_dir = str(Path.cwd())
        builtin = True
    config = _build(file, raw, env, base_dir, builtin)
    if cache is not None and key is not None and not hit:
        parsed.write(cache, key, raw, config)
    return config


def _parse_file(config_path: Path, file: str) -> Raw | None:
    try:
        data = config_path.read_bytes()
    except OSError as exc:
        raise ConfigError(file, "", f"cannot read: {exc.strerror}") from None
    if len(data) > 4 * 1024 * 1024:
        raise ConfigError(file, "", "file is larger than 4 MiB")
    try:
        return load_raw(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(file, "", "file is not UTF-8 text") from None
    except RawYAMLError as exc:
        raise ConfigError(file, "", str(exc)) from None


def _build(
    file: str, raw: Raw | None, env: Mapping[str, str], base_dir: str, builtin: bool
) -> Config:
    r = Reader(file, env, base_dir)
    top = r.mapping("", raw, _TOP_KEYS)
    sources = read_sources(r, top.get("sources"))
    channels = read_channels(r, top.get("channels"))
    rules = read_rules(r, top.get("rules"))
    check_rule_references(r, rules, sources, channels)
    db_path, db_password = read_state(r, top.get("state"))
    config = Config(
        path=file,
        base_dir=base_dir,
        sources=sources,
        db_path=db_path,
        db_password=db_password,
        incidents=read_incidents(r, top.get("incidents")),
        defaults=read_defaults(r, top.get("defaults"), channels, builtin=builtin),
        rules=rules,
        channels=channels,
        escalation_channels=read_escalation(r, top.get("escalation"), channels),
        anomaly=read_anomaly(r, top.get("anomaly")),
        recovery=read_recovery(r, top.get("recovery")),
        security=read_security(r, top.get("security")),
        grafana_url=read_links(r, top.get("links")),
        log=read_log(r, top.get("log")),
        host=host_name(env),
        env=env,
        env_expanded={k: tuple(dict.fromkeys(v)) for k, v in r.expanded.items()},
    )
    return apply_env_overrides(config, env)
