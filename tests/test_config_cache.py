"""The rule file's parsed YAML cached beside the state DB (config/cache.py): reused while the
file is unchanged, so a cron tick imports no PyYAML; read again when the file changes or the
cache is damaged; never holding a secret; the environment read afresh on every load."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from incident_cli.config.cache import SUFFIX, file_key, read
from tests.support.binaries import imported_modules, run_cli, serve_get

EMPTY = json.dumps({"status": "success", "data": {"alerts": []}}).encode()


@pytest.fixture
def source() -> Iterator[tuple[str, list[str]]]:
    """A reachable Prometheus with no alerts; the Authorization headers it was sent."""
    seen: list[str] = []

    def answer(headers: Mapping[str, str]) -> tuple[int, bytes]:
        seen.append(headers.get("Authorization", ""))
        return 200, EMPTY

    with serve_get(answer) as url:
        yield url, seen


def write_config(
    tmp_path: Path, url: str, *, hook: str = "${HOOK_URL}", timeout: str = "60s"
) -> Path:
    path = tmp_path / "incident.yaml"
    path.write_text(
        f"""
sources:
  prometheus:
    type: prometheus
    url: "{url}"
    timeout: {timeout}
    basic_auth: {{username: ops, password: "${{PROM_PASSWORD}}"}}
channels:
  hook: {{type: webhook, url: "{hook}"}}
defaults: {{notify: [hook]}}
"""
    )
    return path


ENV = {"HOOK_URL": "http://127.0.0.1:9/hook-secret-path", "PROM_PASSWORD": "pw-one-secret"}


def tick(tmp_path: Path, *args: str, env: Mapping[str, str] = ENV) -> str:
    """One `incident run` as the crontab line runs it (the DB named with --db)."""
    done = run_cli(["-c", "incident.yaml", "--db", "state.db", *args, "run"], cwd=tmp_path, env=env)
    assert done.code == 0, done.stderr
    return done.stderr


def shown(tmp_path: Path, env: Mapping[str, str] = ENV) -> object:
    done = run_cli(
        ["-c", "incident.yaml", "--db", "state.db", "config", "show", "--json"],
        cwd=tmp_path,
        env=env,
    )
    assert done.code == 0, done.stderr
    return json.loads(done.stdout)


def cache_of(tmp_path: Path) -> Path:
    return tmp_path / f"state.db{SUFFIX}"


def test_a_tick_reuses_the_parsed_file_and_imports_no_yaml(
    tmp_path: Path, source: tuple[str, list[str]]
) -> None:
    write_config(tmp_path, source[0])
    tick(tmp_path)
    cache = cache_of(tmp_path)
    assert cache.is_file() and cache.stat().st_mode & 0o777 == 0o600
    args = ["-c", "incident.yaml", "--db", "state.db", "--quiet", "run"]
    modules, done = imported_modules(tmp_path, *args, heavy=("yaml",), env=ENV)
    assert done.returncode == 0, done.stderr
    assert modules == []
    assert shown(tmp_path) == shown(tmp_path)  # a miss (first) and a hit agree


def test_secrets_are_read_from_the_environment_on_every_load_and_never_cached(
    tmp_path: Path, source: tuple[str, list[str]]
) -> None:
    url, seen = source
    write_config(tmp_path, url)
    tick(tmp_path)
    tick(tmp_path, env={**ENV, "PROM_PASSWORD": "pw-two-secret"})
    basic = [base64.b64decode(h.removeprefix("Basic ")).decode() for h in seen]
    assert basic == ["ops:pw-one-secret", "ops:pw-two-secret"]
    text = cache_of(tmp_path).read_text()
    assert "${PROM_PASSWORD}" in text and "${HOOK_URL}" in text
    for secret in (*ENV.values(), "pw-two-secret", "hook-secret-path"):
        assert secret not in text


@pytest.mark.parametrize(
    "literal",
    ["http://127.0.0.1:9/T0/B0/literal-token", "http://user:pass@127.0.0.1:9/hook"],
    ids=["literal-secret", "credentials-in-a-url"],
)
def test_a_file_that_holds_a_secret_itself_is_never_cached(
    literal: str, tmp_path: Path, source: tuple[str, list[str]]
) -> None:
    write_config(tmp_path, source[0])
    tick(tmp_path)
    assert cache_of(tmp_path).exists()
    write_config(tmp_path, source[0], hook=literal)
    tick(tmp_path)
    assert not cache_of(tmp_path).exists()  # the earlier entry is gone too
    tick(tmp_path)
    assert not cache_of(tmp_path).exists()


def test_an_edited_file_is_read_again(tmp_path: Path, source: tuple[str, list[str]]) -> None:
    config = write_config(tmp_path, source[0], timeout="60s")
    assert shown(tmp_path)["config"]["sources"]["prometheus"]["timeout"] == "1m"  # type: ignore[index]
    before = json.loads(cache_of(tmp_path).read_text())["key"]
    write_config(tmp_path, source[0], timeout="30s")  # the same size
    assert config.stat().st_size == before["size"]
    assert shown(tmp_path)["config"]["sources"]["prometheus"]["timeout"] == "30s"  # type: ignore[index]
    assert json.loads(cache_of(tmp_path).read_text())["key"] == file_key(config)


@pytest.mark.parametrize(
    "damage",
    [
        b"",
        b"not json at all",
        b'{"version": 1, "key": ',
        b'{"version": 99}',
        b"[]",
        "wrong-shape",
        "unknown-tag",
        "other-file",
        "group-readable",
    ],
)
def test_a_damaged_or_stale_cache_is_ignored_and_rebuilt(
    damage: bytes | str, tmp_path: Path, source: tuple[str, list[str]]
) -> None:
    config = write_config(tmp_path, source[0])
    expected = shown(tmp_path)
    cache = cache_of(tmp_path)
    entry = json.loads(cache.read_text())
    if damage == "wrong-shape":
        entry["raw"] = {"m": {"sources": ["x", "str"]}}
    elif damage == "unknown-tag":
        entry["raw"]["m"]["defaults"] = ["x", "python/object", False, 1]
    elif damage == "other-file":
        entry["key"]["path"] = str(tmp_path / "other.yaml")
    if isinstance(damage, bytes):
        cache.write_bytes(damage)
    elif damage == "group-readable":
        cache.chmod(0o644)
    else:
        cache.write_text(json.dumps(entry))
    assert read(cache, file_key(config)) is None  # type: ignore[arg-type]
    assert shown(tmp_path) == expected
    assert read(cache, file_key(config)) is not None  # type: ignore[arg-type]
    assert cache.stat().st_mode & 0o777 == 0o600


def test_the_cache_is_never_written_through_a_symlink(
    tmp_path: Path, source: tuple[str, list[str]]
) -> None:
    write_config(tmp_path, source[0])
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("keep me")
    os.symlink(elsewhere, cache_of(tmp_path))
    tick(tmp_path)
    assert elsewhere.read_text() == "keep me"
    assert not cache_of(tmp_path).is_symlink()
    assert cache_of(tmp_path).stat().st_mode & 0o777 == 0o600


def test_no_cache_without_a_db_named_apart_from_the_config(
    tmp_path: Path, source: tuple[str, list[str]]
) -> None:
    write_config(tmp_path, source[0])
    done = run_cli(["-c", "incident.yaml", "run"], cwd=tmp_path, env=ENV)
    assert done.code == 0, done.stderr
    assert not list(tmp_path.glob(f"*{SUFFIX}"))
