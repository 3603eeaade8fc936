"""The rule file's parsed YAML, cached beside the state DB, so a cron tick need not import PyYAML.

What is cached is the raw tree `yamlraw.load_raw` makes of the file (each scalar's text, YAML
type, quoting and line), not the Config: `${VAR}` references and `*_file` paths stay as
written, and every load expands them, reads the environment and checks the schema afresh. So
no value of the environment is in the cache, and a changed variable takes effect at once.

The entry is keyed by the file's resolved path, device, inode, size, mtime and ctime (ctime
cannot be set back by hand): any change to the file is a miss. A file that holds a secret
itself (a literal password, token, webhook URL, or a URL with credentials) is never cached,
and an earlier entry for it is removed. The cache is written 0600 through a new file renamed
into place, never through a symlink; one that is unreadable, corrupt, of another shape or
stale is ignored and rewritten. Losing it costs one parse.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

from incident_cli.config.yamlraw import Raw, Scalar

if TYPE_CHECKING:
    from incident_cli.config.model import Config

VERSION = 1
MAX_BYTES = 8 * 1024 * 1024
SUFFIX = "-config.json"  # beside the DB: incident.db-config.json


def cache_path(db_path: str) -> Path | None:
    """Where the cache of a state DB lives; None for a DB that is no file (a URL, :memory:)."""
    if db_path == ":memory:" or "://" in db_path:
        return None
    return Path(db_path + SUFFIX)


def file_key(config_path: Path) -> dict[str, Any] | None:
    """What identifies the rule file's present content, or None if it cannot be looked at."""
    try:
        info = os.stat(config_path)
        where = str(config_path.resolve())
    except (OSError, RuntimeError):
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    return {
        "path": where,
        "dev": info.st_dev,
        "ino": info.st_ino,
        "size": info.st_size,
        "mtime_ns": info.st_mtime_ns,
        "ctime_ns": info.st_ctime_ns,
    }


def read(cache: Path, key: dict[str, Any]) -> Raw | None:
    """The cached tree for the file `key` names, or None (absent, stale, corrupt, unsafe)."""
    try:
        fd = os.open(cache, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            return None
        if info.st_size > MAX_BYTES or info.st_mode & 0o077:
            return None
        with os.fdopen(fd, "rb", closefd=False) as handle:
            entry = json.loads(handle.read())
        if not isinstance(entry, dict) or entry.get("version") != VERSION:
            return None
        if entry.get("key") != key:
            return None
        return _decode(entry.get("raw"), depth=0)
    except (OSError, ValueError, RecursionError, _Corrupt):
        return None
    finally:
        os.close(fd)


def write(cache: Path, key: dict[str, Any], raw: Raw | None, config: Config) -> None:
    """Cache `raw` for the file `key` names, unless it holds a secret (then drop any entry).
    Never raises: a cache that cannot be written is only slower."""
    if raw is None or _holds_secret(raw, [v for v in config.secret_values() if v]):
        with contextlib.suppress(OSError):
            if cache.is_symlink() or cache.is_file():
                cache.unlink()
        return
    text = json.dumps({"version": VERSION, "key": key, "raw": _encode(raw)}, ensure_ascii=False)
    temporary = cache.with_name(f".{cache.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
        os.replace(temporary, cache)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temporary)


def _holds_secret(raw: Raw, secrets: list[str]) -> bool:
    """Whether any scalar of the file is, or contains, a secret value, or a URL with
    credentials (`scheme://user:password@host`)."""
    if isinstance(raw, dict):
        return any(_holds_secret(v, secrets) for v in raw.values())
    if isinstance(raw, list):
        return any(_holds_secret(v, secrets) for v in raw)
    text = raw.text
    authority = text.split("://", 1)[1].split("/", 1)[0] if "://" in text else ""
    return "@" in authority or any(secret in text for secret in secrets)


class _Corrupt(Exception):
    pass


# A scalar is [text, tag, quoted, line]; a mapping {"m": {...}}; a sequence {"s": [...]}.


def _encode(raw: Raw) -> Any:
    if isinstance(raw, dict):
        return {"m": {k: _encode(v) for k, v in raw.items()}}
    if isinstance(raw, list):
        return {"s": [_encode(v) for v in raw]}
    return [raw.text, raw.tag, raw.quoted, raw.line]


_TAGS = frozenset({"str", "int", "float", "bool", "null"})


def _decode(value: Any, depth: int) -> Raw:
    if depth > 60:
        raise _Corrupt
    if isinstance(value, list):
        if len(value) != 4:
            raise _Corrupt
        text, tag, quoted, line = value
        if not (
            isinstance(text, str)
            and tag in _TAGS
            and isinstance(quoted, bool)
            and type(line) is int
        ):
            raise _Corrupt
        return Scalar(text=text, tag=tag, quoted=quoted, line=line)
    if isinstance(value, dict) and len(value) == 1:
        if isinstance(value.get("m"), dict):
            return {str(k): _decode(v, depth + 1) for k, v in value["m"].items()}
        if isinstance(value.get("s"), list):
            return [_decode(v, depth + 1) for v in value["s"]]
    raise _Corrupt
