"""The handlers a rule can name: the one list of built-ins, the `Handler` protocol a user's
`module:function` follows, and how a name becomes a function."""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final, Protocol

if TYPE_CHECKING:
    from incident_cli.config.model import Rule
    from incident_cli.models import ActionPlan, Alert, Incident


class Handler(Protocol):
    """What a rule asks for when its incident opens or reopens.

    Called with the incident, its first alert (None when there is none) and the rule; returns
    the actions to plan: a list (or any iterable) of ActionPlan, one ActionPlan, or None. It
    never sees the config or the DB, and whatever it raises is recorded as a failed plan.
    """

    def __call__(
        self, incident: Incident, alert: Alert | None, rule: Rule, /
    ) -> Iterable[ActionPlan] | ActionPlan | None: ...


# name in a rule → "module:function"; imported only when a rule uses it.
BUILTIN: Final = {
    "default": "incident_cli.handlers.builtin:default",
    "service_down": "incident_cli.handlers.builtin:service_down",
    "slo_breach": "incident_cli.handlers.builtin:slo_breach",
    "performance_issue": "incident_cli.handlers.builtin:performance_issue",
    "security_incident": "incident_cli.handlers.builtin:security_incident",
}


def _import(reference: str) -> Handler:
    """Import `module:function`; raises ImportError/AttributeError/TypeError when unusable."""
    module_name, _, func_name = reference.partition(":")
    if not module_name or not func_name:
        raise ValueError("expected module:function")
    module = importlib.import_module(module_name)
    func = getattr(module, func_name)
    if not callable(func):
        raise TypeError(f"{reference} is not callable")
    return func  # type: ignore[no-any-return]


def load(name: str) -> Handler:
    """The handler a rule names: a built-in by name, else the user's `module:function`."""
    if ":" in name:
        return _import(name)
    if name not in BUILTIN:
        raise KeyError(f"unknown handler {name!r}")
    return _import(BUILTIN[name])


def check(name: str) -> None:
    """Raises ValueError saying why a rule cannot use this handler name."""
    if name in BUILTIN:
        return
    if ":" not in name:
        raise ValueError(
            f"unknown handler {name!r} (built-in: {', '.join(BUILTIN)}; or module:function)"
        )
    try:
        _import(name)
    except (ImportError, AttributeError, TypeError, ValueError) as exc:
        raise ValueError(f"handler {name!r} cannot be loaded: {exc}") from None
