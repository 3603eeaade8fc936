"""Plain option values (str, int, float, bool) coerced without importing pydantic.

Typer (0.2x) coerces every option value through a pydantic TypeAdapter, built the first time the
option is processed. Importing pydantic and building those adapters costs ~60 ms, several times
what the rest of a cron tick's start-up costs, and every command pays it for its global options
alone. For the values whose result is beyond doubt (a string option given a string, a number
option given its default or plain digits, within its min/max) this gives that result directly;
for anything else (a sign, an exponent, whitespace, out of range, a Path, a list, a parser) it
hands the value to Typer's own coercion, so every error message and edge case stays Typer's.
tests/test_startup.py checks the two agree.

With a Typer that does not coerce this way (older versions use click types), this does nothing.
"""

from __future__ import annotations

import math
import re
from typing import Any

try:
    from typer._coercion import RuntimeParam, build_runtime_param
    from typer.core import _TyperParameter
except ImportError:  # pragma: no cover - a Typer without pydantic coercion
    RuntimeParam = None  # type: ignore[assignment,misc]

_INT = re.compile(r"[0-9]{1,15}")
_FLOAT = re.compile(r"[0-9]{1,15}(?:\.[0-9]{1,15})?")


class NotPlain(Exception):
    """The value is not one whose coercion is beyond doubt: Typer's own coercion decides."""


def plain_value(annotation: Any, info: Any, value: Any) -> Any:
    """The coerced value, or raise NotPlain. `info` is the option's Typer ParameterInfo."""
    if info.parser is not None:
        raise NotPlain
    if annotation is str:
        if type(value) is str:
            return value
        raise NotPlain
    if annotation is bool:
        if type(value) is bool:
            return value
        raise NotPlain
    if annotation is int or annotation is float:
        if type(value) is annotation:
            number = value
        elif type(value) is str and (_INT if annotation is int else _FLOAT).fullmatch(value):
            number = annotation(value)
        else:
            raise NotPlain
        if info.clamp or (annotation is float and not math.isfinite(number)):
            raise NotPlain
        if (info.min is not None and number < info.min) or (
            info.max is not None and number > info.max
        ):
            raise NotPlain  # Typer words the range error
        return number
    raise NotPlain


if RuntimeParam is not None:

    class PlainParam(RuntimeParam):
        """A Typer runtime param that coerces plain values itself and defers the rest."""

        def _coerce_value(self, value: Any, param: _TyperParameter, ctx: Any) -> Any:
            try:
                return plain_value(self.annotation, self.parameter_info, value)
            except NotPlain:
                full = build_runtime_param(param.type_descriptor)
                param._runtime_param = full  # later values go straight to Typer's coercion
                return full._coerce_value(value, param=param, ctx=ctx)


def install(command: Any, ctx: Any, *, top: bool = True) -> None:
    """Give the options of `command` and its subcommands the pydantic-free coercion.

    `ctx` is the top command's context: the -h/--help option, which Click makes per command
    from the context's help option names (inherited by every subcommand), is made now with it,
    so that it gets one too.
    """
    if RuntimeParam is None:
        return  # pragma: no cover
    params = list(getattr(command, "params", ()))
    settings = getattr(command, "context_settings", None) or {}
    if top or "help_option_names" not in settings:
        help_option = command.get_help_option(ctx)
        if help_option is not None:
            params.append(help_option)
    for param in params:
        if not isinstance(param, _TyperParameter) or param._runtime_param is not None:
            continue
        descriptor = param.type_descriptor
        if descriptor.file_annotation is not None:
            continue
        # Every other param gets one, even those it always defers: Typer builds the runtime
        # param before it looks at the value, so an absent --output (a Path) would otherwise
        # import pydantic just to pass None through.
        annotation = descriptor.annotation
        if descriptor.is_choice or descriptor.is_path or param.multiple or param.nargs != 1:
            annotation = None  # defer every value
        param._runtime_param = PlainParam(
            parameter_info=descriptor.parameter_info, annotation=annotation
        )
    for sub in getattr(command, "commands", {}).values():
        install(sub, ctx, top=False)
