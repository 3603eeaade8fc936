"""Reading raw YAML nodes into typed values: `${VAR}` expansion, errors that name the key."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from incident_cli.config.yamlraw import Raw, Scalar
from incident_cli.errors import ConfigError
from incident_cli.times import parse_duration

_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class Reader:
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
            raise self.fail(path, f"expected a mapping, got {describe(raw)}")
        for key in raw:
            if key not in allowed:
                raise self.fail(
                    join_path(path, key), f"unknown key (allowed: {', '.join(allowed)})"
                )
        return raw

    def free_mapping(self, path: str, raw: Raw | None) -> dict[str, Raw]:
        """A mapping whose keys are the user's own (source names, labels, channel names)."""
        if raw is None or (isinstance(raw, Scalar) and raw.tag == "null"):
            return {}
        if not isinstance(raw, dict):
            raise self.fail(path, f"expected a mapping, got {describe(raw)}")
        return raw

    def text(self, path: str, raw: Raw | None, *, allow_empty: bool = True) -> str:
        if not isinstance(raw, Scalar) or raw.tag == "null":
            raise self.fail(path, f"expected a string, got {describe(raw)}")
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
            raise self.fail(path, f"expected a list, got {describe(raw)}")
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
            raise self.fail(join_path(path, key), f"give either {key} or {key}_file, not both")
        if from_file is not None:
            file_path = self.text(join_path(path, f"{key}_file"), from_file, allow_empty=False)
            resolved = Path(self.base_dir, file_path)
            try:
                return resolved.read_text(encoding="utf-8").rstrip("\r\n")
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
                raise self.fail(
                    join_path(path, f"{key}_file"), f"cannot read {resolved}: {reason}"
                ) from None
        return self.opt_text(join_path(path, key), direct)


def join_path(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def describe(raw: Raw | None) -> str:
    if raw is None:
        return "nothing"
    if isinstance(raw, dict):
        return "a mapping"
    if isinstance(raw, list):
        return "a list"
    return "null" if raw.tag == "null" else f"{raw.tag} {raw.text!r}"
