"""`block_ip`: block the alert's source address. The IP label is parsed with `ipaddress` and
checked against `security.never_block`; an address blocked within a day is not blocked again;
at most `security.max_blocks_per_tick` start per tick (the rest wait for the next)."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any, ClassVar

from incident_cli.config.model import Config
from incident_cli.recovery.context import TickContext
from incident_cli.recovery.kinds.base import Decision, Due, Outcome
from incident_cli.recovery.kinds.steps import (
    command_timeout,
    first_failure,
    record_failed,
    record_succeeded,
    run_decision,
    templates_of,
)
from incident_cli.store import actions

BLOCK_DEDUPE_SECONDS = 86400.0  # an IP blocked within this window is not blocked again


def ip_problem(
    config: Config, label: str, raw: str
) -> str | ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The label's value as one host address outside `never_block`, or why it is not."""
    text = raw.strip()
    try:
        ip = ipaddress.ip_address(text) if len(text) <= 64 else None
    except ValueError:
        ip = None
    if ip is None or (isinstance(ip, ipaddress.IPv6Address) and ip.scope_id):
        return f"label {label!r} is not an IP address"
    if ip.is_unspecified or ip.is_multicast:
        return f"{ip} is not a single host address"
    candidates = [ip]
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        candidates.append(ip.ipv4_mapped)
    for network in config.security.never_block:
        if any(c.version == network.version and c in network for c in candidates):
            return f"{ip} is in never_block ({network})"
    return ip


class BlockIpKind:
    name: ClassVar[str] = "block_ip"

    def prepare(self, ctx: TickContext, due: Due, params: Mapping[str, Any]) -> Decision:
        incident, at = due.incident, due.at
        label = str(params.get("ip_label") or "source_ip")
        raw = incident.labels.get(label)
        if raw is None:
            return Decision("refuse", f"label {label!r} is not set on the alert")
        ip = ip_problem(ctx.config, label, raw)
        if isinstance(ip, str):
            return Decision("refuse", ip)
        if actions.recently_blocked(ctx.db, str(ip), at - BLOCK_DEDUPE_SECONDS):
            return Decision("skip", f"{ip} was already blocked")
        if ctx.blocks_left <= 0:
            return Decision("defer", "max_blocks_per_tick reached; next tick")
        templates = templates_of(params)
        if not templates[0]:
            return Decision("refuse", "the block_ip action has no command")
        return run_decision(
            ctx,
            due,
            params,
            templates,
            command_timeout(ctx, params),
            extra={"ip": str(ip)},
            extra_env={"INCIDENT_IP": str(ip)},
            target=str(ip),
        )

    def record(self, ctx: TickContext, due: Due, decision: Decision, outcome: Outcome) -> None:
        job = decision.job
        assert job is not None
        failed = first_failure(outcome)
        if failed is not None:
            record_failed(ctx, due, job, failed, outcome)
            return
        record_succeeded(ctx, due, job, outcome)
