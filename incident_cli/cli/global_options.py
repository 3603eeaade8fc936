"""Global options typed after the command (`incident notify -v`, `incident list -c x.yaml`):
moved in front of it before Click parses, so they mean what they mean before it."""

from __future__ import annotations

from typing import Any

# The options of the `incident` group a user may also give after the command.
FLAGS = frozenset({"-v", "--verbose", "-q", "--quiet"})
VALUED = frozenset({"-c", "--config", "--db", "--wait"})


def _group_takes_value(group: Any, ctx: Any) -> set[str]:
    """The group's own options that take a value (so the token after one is not a command)."""
    names: set[str] = set()
    for param in group.get_params(ctx):
        if not getattr(param, "opts", None) or getattr(param, "is_flag", False):
            continue
        if getattr(param, "count", False):
            continue
        names.update(param.opts, getattr(param, "secondary_opts", []))
    return names


def _leaf_options(command: Any, ctx: Any) -> tuple[set[str], set[str]]:
    """(every option name of the command, those that take a value)."""
    every: set[str] = set()
    valued: set[str] = set()
    for param in command.get_params(ctx):
        opts = [*getattr(param, "opts", []), *getattr(param, "secondary_opts", [])]
        if not opts or not all(o.startswith("-") for o in opts):
            continue
        every.update(opts)
        if not getattr(param, "is_flag", False) and not getattr(param, "count", False):
            valued.update(opts)
    return every, valued


def hoist(group: Any, ctx: Any, args: list[str]) -> list[str]:
    """`args` with the global options found after the command moved to just before it (after
    any given before it, so a value typed later still wins). A token that is the value of one
    of the command's own options, and everything after `--`, is left where it is."""
    takes_value = _group_takes_value(group, ctx)
    i = 0
    while i < len(args):
        token = args[i]
        if token == "--":
            return args
        if not token.startswith("-") or token == "-":
            break
        i += 2 if token in takes_value else 1
    if i >= len(args):
        return args
    at = i  # where the command's name is
    command: Any = group
    while hasattr(command, "commands") and i < len(args):
        found = command.get_command(ctx, args[i])
        if found is None:
            return args  # Click reports the unknown command
        command = found
        i += 1
    if hasattr(command, "commands"):
        return args
    own, own_valued = _leaf_options(command, ctx)
    kept: list[str] = []
    moved: list[str] = []
    rest = args[i:]
    j = 0
    while j < len(rest):
        token = rest[j]
        if token == "--":
            kept.extend(rest[j:])
            break
        name = token.split("=", 1)[0] if token.startswith("--") else token
        if name in own:
            step = 2 if token in own_valued else 1
            kept.extend(rest[j : j + step])
            j += step
        elif token in FLAGS:
            moved.append(token)
            j += 1
        elif token in VALUED and j + 1 < len(rest):
            moved.extend(rest[j : j + 2])
            j += 2
        elif name in VALUED and "=" in token:
            moved.append(token)
            j += 1
        else:
            kept.append(token)
            j += 1
    if not moved:
        return args
    return [*args[:at], *moved, *args[at:i], *kept]
