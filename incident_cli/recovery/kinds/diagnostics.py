"""`diagnostics`: commands (every one runs, whatever the others did) and PromQL queries whose
bounded, masked results go into the timeline."""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from typing import Any, ClassVar

from incident_cli.recovery.context import MAX_STORED_OUTPUT, TickContext, number
from incident_cli.recovery.diagnostics import MAX_QUERY_RESULT_CHARS, prometheus_source
from incident_cli.recovery.kinds.base import Decision, Due, Outcome
from incident_cli.recovery.kinds.steps import run_decision, shown_commands
from incident_cli.store.timeline import add_event


class DiagnosticsKind:
    name: ClassVar[str] = "diagnostics"

    def prepare(self, ctx: TickContext, due: Due, params: Mapping[str, Any]) -> Decision:
        return run_decision(
            ctx,
            due,
            params,
            [list(t) for t in params.get("commands") or []],
            number(params, "timeout", 30.0),
            keep_going=True,
            queries=tuple(str(q) for q in params.get("queries") or []),
            source=prometheus_source(ctx.config, params.get("source")),
        )

    def record(self, ctx: TickContext, due: Due, decision: Decision, outcome: Outcome) -> None:
        row, incident, at = due
        _, output = shown_commands(ctx, outcome)
        commands: list[dict[str, Any]] = []
        errors: list[str] = []
        parts: list[str] = []
        for r in outcome.commands:
            argv = [ctx.mask(a) for a in r.argv]
            error = ctx.mask(r.error) if r.error else None
            commands.append(
                {
                    "argv": argv,
                    "exit_code": r.exit_code,
                    "error": error,
                    "output": ctx.mask(r.output)[-2000:],
                }
            )
            if error:
                errors.append(error)
            parts.append(f"{shlex.join(argv)} ({error or f'exit {r.exit_code}'})")
        queries = _masked_queries(ctx, outcome, errors)
        if queries:
            parts.append(f"{len(queries)} quer{'y' if len(queries) == 1 else 'ies'}")
        status = "failed" if errors else "succeeded"
        if any(r.error and not r.timed_out for r in outcome.commands):
            ctx.result.problems += 1  # a diagnostic command could not start
        summary = ", ".join(parts)
        last_exit = outcome.commands[-1].exit_code if outcome.commands else None
        ctx.finish(
            row,
            status,
            at,
            error="; ".join(errors)[:2000] or None,
            exit_code=last_exit,
            output=output or json.dumps(queries, ensure_ascii=False)[-MAX_STORED_OUTPUT:],
            only_if="running",
        )
        add_event(
            ctx.db,
            incident.id,
            at,
            f"action_{status}",
            f"diagnostics: {summary}"[:1000],
            data={"action_id": row["id"], "commands": commands, "queries": queries},
        )
        ctx.report(
            row,
            status,
            "; ".join(errors) or summary,
            argv=tuple(tuple(c["argv"]) for c in commands),
            exit_code=last_exit,
        )


def _masked_queries(ctx: TickContext, outcome: Outcome, errors: list[str]) -> list[dict[str, Any]]:
    """Each query's result with secrets masked (cut down when masking broke its JSON); the
    queries' errors are added to `errors`."""
    queries: list[dict[str, Any]] = []
    for q in outcome.queries:
        text = ctx.mask(json.dumps(q, ensure_ascii=False, default=str))
        try:
            queries.append(json.loads(text))
        except ValueError:
            queries.append({"query": q.get("query"), "result": text[:MAX_QUERY_RESULT_CHARS]})
        if q.get("error"):
            errors.append(ctx.mask(str(q["error"])))
    return queries
