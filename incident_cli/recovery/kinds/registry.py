"""KINDS: the one list of action kinds `recover` runs, by the `kind` of their rows. (`verify`
is not a row kind: it acts on a `command` that exited 0; see kinds/verify.py.)"""

from __future__ import annotations

from incident_cli.recovery.kinds.base import ActionKind
from incident_cli.recovery.kinds.block_ip import BlockIpKind
from incident_cli.recovery.kinds.command import CommandKind
from incident_cli.recovery.kinds.diagnostics import DiagnosticsKind
from incident_cli.recovery.kinds.escalate import EscalateKind
from incident_cli.recovery.kinds.verify import VerifyKind

KINDS: dict[str, ActionKind] = {
    kind.name: kind for kind in (CommandKind(), DiagnosticsKind(), BlockIpKind(), EscalateKind())
}

VERIFY = VerifyKind()
