"""Label values are untrusted: they reach commands as environment variables always, and as
`{name}` placeholders only when they are plainly safe; otherwise the action is refused."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from incident_cli.recovery.environment import Refused, env_name, render_argv, unsafe_reason
from incident_cli.recovery.tick import recover_due
from tests.support.recover import (
    T0,
    actions,
    alert,
    db_for,
    fire,
    load,
    recovery_config,
    script,
    timeline,
)

pytestmark = pytest.mark.usefixtures("both_backends")

HOSTILE = {
    "shell separator": "; rm -rf /",
    "command substitution": "$(id)",
    "backticks": "`id`",
    "an option": "--help",
    "a newline": "backend\nrm -rf /",
    "one MiB": "a" * (1 << 20),
    "non-ASCII": "bäckend",
    "a space": "back end",
    "a glob": "*",
    "empty": "",
    "a NUL byte": "back\0end",
    "a brace": "{service}",
}


@pytest.mark.parametrize("value", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_value_is_refused_as_a_placeholder(value: str) -> None:
    assert unsafe_reason(value) is not None
    with pytest.raises(Refused) as info:
        render_argv(["systemctl", "restart", "{service}.service"], {"service": value})
    assert info.value.label == "service"


def test_the_refusal_says_why() -> None:
    assert "starts with '-'" in str(unsafe_reason("--help"))
    assert "';'" in str(unsafe_reason("; rm -rf /"))
    assert "'\\n'" in str(unsafe_reason("a\nb"))
    assert "1048576 characters" in str(unsafe_reason("a" * (1 << 20)))
    assert "'ä'" in str(unsafe_reason("bäckend"))


@pytest.mark.parametrize(
    "value", ["backend", "api-2.prod", "10.0.0.1:9100", "user@host", "a/b+c=d", "x_y"]
)
def test_a_plain_value_is_substituted_within_one_argument(value: str) -> None:
    argv = render_argv(["systemctl", "restart", "{service}.service"], {"service": value})
    assert argv == ["systemctl", "restart", f"{value}.service"]


def test_several_placeholders_and_untouched_braces() -> None:
    argv = render_argv(
        ["tool", "--target={job}/{instance}", "{not a placeholder}", "{}"],
        {"job": "node", "instance": "h1:9100"},
    )
    assert argv == ["tool", "--target=node/h1:9100", "{not a placeholder}", "{}"]


def test_a_missing_label_is_refused() -> None:
    with pytest.raises(Refused) as info:
        render_argv(["restart", "{service}"], {"alertname": "X"})
    assert "not set" in str(info.value)


def test_a_substituted_value_cannot_inject_another_placeholder() -> None:
    # {a}'s value is inserted literally, never re-scanned.
    assert render_argv(["x", "{a}"], {"a": "b", "b": "c"}) == ["x", "b"]


def test_environment_names_are_sanitised() -> None:
    assert env_name("service") == "INCIDENT_LABEL_SERVICE"
    assert env_name("kubernetes.io/name") == "INCIDENT_LABEL_KUBERNETES_IO_NAME"
    assert env_name("weird-ÄÖ") == "INCIDENT_LABEL_WEIRD___"


# --------------------------------------------------------------------------- through recover


def substitution_config(tmp_path: Path, argv: str) -> Path:
    return recovery_config(
        tmp_path,
        f"""
        rules:
          - name: fix
            match: {{alertname: Down}}
            handler: service_down
            recovery: {{commands: [{argv}], timeout: 10s, max_attempts: 1}}
        """,
    )


def test_hostile_labels_reach_the_command_verbatim_as_environment_variables(
    tmp_path: Path,
) -> None:
    dump = tmp_path / "dump.py"
    dump.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "env = {k: v for k, v in os.environ.items() if k.startswith('INCIDENT_')}\n"
        "json.dump({'argv': sys.argv[1:], 'env': env}, open('dump.json', 'w'))\n"
    )
    dump.chmod(0o755)
    config = load(substitution_config(tmp_path, '["./dump.py", "{alertname}"]'))
    db = db_for(tmp_path)
    hostile = {
        "evil": "; rm -rf / $(id) `id`",
        "opt": "--help",
        "nl": "a\nb",
        "uni": "bäckend ☃",
        "kubernetes_io_name": "x",
    }
    fire(db, config, T0, alert(alertname="Down", **hostile))
    result = recover_due(db, config, T0 + 1)
    assert result.problems == 0, result.actions
    dumped = json.loads((tmp_path / "dump.json").read_text())
    assert dumped["argv"] == ["Down"]
    env = dumped["env"]
    assert env["INCIDENT_LABEL_EVIL"] == "; rm -rf / $(id) `id`"
    assert env["INCIDENT_LABEL_OPT"] == "--help"
    assert env["INCIDENT_LABEL_NL"] == "a\nb"
    assert env["INCIDENT_LABEL_UNI"] == "bäckend ☃"
    assert env["INCIDENT_LABEL_ALERTNAME"] == "Down"
    assert env["INCIDENT_ID"] == "1"
    assert env["INCIDENT_ATTEMPT"] == "1"


def test_a_huge_label_value_still_reaches_the_environment_bounded(tmp_path: Path) -> None:
    script(tmp_path, "size.sh", 'printf %s "$INCIDENT_LABEL_BIG" | wc -c > size.txt\n')
    config = load(substitution_config(tmp_path, '["./size.sh"]'))
    db = db_for(tmp_path)
    fire(db, config, T0, alert(alertname="Down", big="x" * (1 << 20)))
    result = recover_due(db, config, T0 + 1)
    assert result.problems == 0, result.actions
    size = int((tmp_path / "size.txt").read_text())
    assert 16384 <= size <= 32768  # stored labels are clipped; the command still starts


@pytest.mark.parametrize("value", ["; touch pwned", "$(touch pwned)", "`touch pwned`", "--help"])
def test_an_unsafe_placeholder_refuses_the_action_and_runs_nothing(
    tmp_path: Path, value: str
) -> None:
    script(tmp_path, "fix.sh", "touch ran\n")
    config = load(substitution_config(tmp_path, '["./fix.sh", "{service}"]'))
    db = db_for(tmp_path)
    fire(db, config, T0, alert(alertname="Down", service=value))
    result = recover_due(db, config, T0 + 1)
    assert result.problems == 1
    assert not (tmp_path / "ran").exists()
    assert not (tmp_path / "pwned").exists()
    [action] = actions(db)
    assert action["status"] == "refused"
    assert "label 'service'" in action["error"]
    assert action["started_at"] is None
    [event] = [e for e in timeline(db) if e["kind"] == "action_refused"]
    assert "label 'service'" in event["message"]
    assert event["data"]["reason"] == action["error"]
    # A refused action is final: the next tick does nothing with it.
    assert recover_due(db, config, T0 + 100).actions == []
