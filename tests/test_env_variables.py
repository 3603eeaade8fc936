"""The environment variables `incident` reads are listed once, in config.env.variables(): every
one the code reads is in it, and docs/configuration.md's Environment tables name exactly it."""

from __future__ import annotations

import re
from pathlib import Path

from incident_cli.config.env import all_names
from incident_cli.recovery.environment import ENV_KEPT

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "incident_cli"

# A constant naming a variable: `CONFIG_VAR = "INCIDENT_CONFIG"`.
CONSTANT = re.compile(r'^\s*([A-Z][A-Z0-9_]*)\s*=\s*"([A-Z][A-Z0-9_]*)"', re.MULTILINE)
# A read: os.environ.get(X), os.environ[X], os.getenv(X), and the same on a mapping of the
# environment passed around (`env`, `environ`, `self.environ`); X a literal or a constant.
READ = re.compile(
    r"\b(?:environ|env)\s*(?:\.get\(|\[)\s*(?:\w+\.)?(\"[A-Z][A-Z0-9_]*\"|[A-Z][A-Z0-9_]*)"
    r"|\bgetenv\(\s*(?:\w+\.)?(\"[A-Z][A-Z0-9_]*\"|[A-Z][A-Z0-9_]*)"
)
# A variable expanded in built-in YAML (the built-in defaults' source, each channel's ENV), or
# a channel option's `env="…"`. (The `${VAR}` of help texts has no underscore: not a name.)
EXPANDED = re.compile(r"\$\{([A-Z][A-Z0-9]*_[A-Z0-9_]+)|\benv=\"([A-Z][A-Z0-9_]*)\"")


def read_by_the_code() -> dict[str, str]:
    """Every variable named where incident_cli reads the environment: name → first file."""
    sources = {path: path.read_text() for path in sorted(PACKAGE.rglob("*.py"))}
    constants = {m[0]: m[1] for text in sources.values() for m in CONSTANT.findall(text)}
    found: dict[str, str] = {}
    for path, text in sources.items():
        for match in READ.finditer(text):
            arg = match.group(1) or match.group(2)
            name = arg.strip('"') if arg.startswith('"') else constants.get(arg)
            if name is not None:
                found.setdefault(name, str(path.relative_to(REPO)))
        for expanded, option in EXPANDED.findall(text):
            found.setdefault(expanded or option, str(path.relative_to(REPO)))
    return found


def documented() -> list[str]:
    """The first column of every table in docs/configuration.md's Environment section."""
    text = (REPO / "docs" / "configuration.md").read_text()
    section = text[text.index("\n## Environment\n") :].split("\n## ", 2)[1]
    return re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \|", section, re.MULTILINE)


def test_every_variable_the_code_reads_is_in_the_one_list() -> None:
    read = read_by_the_code()
    # The scan sees each way the code reads one: a constant, a literal, a ${VAR} in YAML.
    assert {"INCIDENT_CONFIG", "COLUMNS", "INCIDENT_TEST_CRASH_AT", "PROMETHEUS_URL"} <= set(read)
    assert {"SLACK_WEBHOOK_URL", "PAGERDUTY_API_TOKEN"} <= set(read)
    # The system's own (PATH, HOME, LANG, TZ) are passed on to recovery commands, not settings.
    missing = {name: where for name, where in read.items() if name not in all_names()}
    assert {n: w for n, w in missing.items() if n not in ENV_KEPT} == {}


def test_the_one_list_names_each_variable_once() -> None:
    names = all_names()
    assert len(names) == len(set(names))


def test_the_docs_tables_of_variables_are_exactly_the_one_list() -> None:
    rows = documented()
    assert len(rows) == len(set(rows)), "a variable documented twice"
    assert sorted(rows) == sorted(all_names())
