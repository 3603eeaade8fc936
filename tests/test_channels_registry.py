"""The channel kinds are listed once (notify/channels/registry.KINDS): every entry imports,
declares its options, has each of them documented in docs/notifications.md, and is covered by
the secret-leak matrix."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from incident_cli.notify.channels.options import Options
from incident_cli.notify.channels.registry import KINDS, channel_class, options_class
from tests.test_secrets_leak import CHANNELS, MARK, _channel_spec

DOCS = Path(__file__).resolve().parent.parent / "docs" / "notifications.md"


def documented_options(kind: str) -> dict[str, str]:
    """The options table of the kind's section of docs/notifications.md: key → its "secret"
    column (a row may name several keys: `starttls`, `tls`)."""
    text = DOCS.read_text()
    start = text.index(f"\n## {kind}\n")
    section = text[start + 1 :].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`"):
            for key in re.findall(r"`([a-z_]+)`", cells[0]):
                rows[key] = cells[2]
    return rows


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_imports_and_declares_its_options(kind: str) -> None:
    cls = channel_class(kind)
    assert cls.type == kind
    options = options_class(kind)
    assert issubclass(options, Options) and options is not Options
    assert dataclasses.is_dataclass(options)
    assert options().missing(), f"{kind}: an empty required key is what disables it"


@pytest.mark.parametrize("kind", KINDS)
def test_every_option_of_every_kind_is_documented_with_whether_it_is_a_secret(
    kind: str,
) -> None:
    documented = documented_options(kind)
    declared = {spec.key: spec.secret for spec in options_class(kind).specs()}
    assert sorted(documented) == sorted(declared), f"docs/notifications.md, ## {kind}"
    for key, secret in declared.items():
        assert documented[key].startswith("yes" if secret else "no"), f"{kind}.{key}"


@pytest.mark.parametrize("kind", KINDS)
def test_the_leak_matrix_sets_every_secret_of_every_kind(kind: str) -> None:
    # A kind with modes (Slack's webhook and Web API) has one spec per mode.
    modes = [k for k in CHANNELS if k == kind or k.startswith(f"{kind}-")]
    assert modes, f"{kind} is not in the leak matrix"
    spec = " ".join(_channel_spec(k, "http://127.0.0.1:9") for k in modes)
    for key in options_class(kind).secret_keys():
        assert f"{key}: " in spec and MARK in spec, f"{kind}.{key} is not in the leak matrix"
    for field in options_class(kind).specs():
        if field.kind == "mapping" and field.secret:
            assert f"{field.key}: " in spec, f"{kind}.{field.key} is not in the leak matrix"


def test_a_channel_kind_outside_the_registry_is_refused_with_the_known_ones(
    tmp_path: Path,
) -> None:
    from incident_cli.config.load import load_config
    from incident_cli.errors import ConfigError

    path = tmp_path / "incident.yaml"
    path.write_text("channels:\n  x: {type: carrier-pigeon}\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path, {})
    assert f"(known: {', '.join(KINDS)})" in str(raised.value)
