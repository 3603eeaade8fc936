"""A local fake of the Slack Web API methods `incident` calls (chat.postMessage, chat.update,
reactions.get), answering with the documented shapes. (No tests here.)"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.support.notify import Received, Reply


def answer(body: dict[str, Any], status: int = 200, **headers: str) -> Reply:
    return status, {"Content-Type": "application/json", **headers}, json.dumps(body).encode()


class FakeSlack:
    """chat.postMessage and chat.update as the Web API answers them; `override` may answer
    a call instead (by method name)."""

    def __init__(self) -> None:
        self.calls: list[Received] = []
        self.deleted = False
        self.reactions: list[dict[str, Any]] = []
        self.override: Callable[[str, Received], Reply | None] = lambda method, request: None

    def __call__(self, request: Received) -> Reply:
        self.calls.append(request)
        method = urlsplit(request.path).path.rsplit("/", 1)[-1]
        special = self.override(method, request)
        if special is not None:
            return special
        if method == "chat.postMessage":
            ts = f"1700000000.{len(self.calls):06d}"
            return answer({"ok": True, "channel": "C0ONCALL", "ts": ts, "message": {"ts": ts}})
        if method == "reactions.get":
            query = {k: v[0] for k, v in parse_qs(urlsplit(request.path).query).items()}
            if self.deleted:
                return answer({"ok": False, "error": "message_not_found"})
            message = {"type": "message", "ts": query.get("timestamp"), "reactions": self.reactions}
            return answer(
                {"ok": True, "type": "message", "channel": query.get("channel"), "message": message}
            )
        if method == "chat.update":
            if self.deleted:
                return answer({"ok": False, "error": "message_not_found"})
            return answer(
                {"ok": True, "channel": request.body["channel"], "ts": request.body["ts"]}
            )
        return answer({"ok": False, "error": "unknown_method"})

    def methods(self) -> list[str]:
        return [urlsplit(c.path).path.rsplit("/", 1)[-1] for c in self.calls]
