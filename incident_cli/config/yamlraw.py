"""YAML parsed to raw scalars, so `no`, `on` and `010` stay text until the schema says otherwise."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

if TYPE_CHECKING:
    import yaml


@dataclass(frozen=True)
class Scalar:
    """One YAML scalar as written: its text, the type YAML 1.1 would give it, and position."""

    text: str
    tag: str  # "str", "int", "float", "bool", "null"
    quoted: bool
    line: int


Raw = Union[dict[str, "Raw"], list["Raw"], Scalar]  # noqa: UP007 (a recursive alias)

_TAGS = {
    "tag:yaml.org,2002:str": "str",
    "tag:yaml.org,2002:int": "int",
    "tag:yaml.org,2002:float": "float",
    "tag:yaml.org,2002:bool": "bool",
    "tag:yaml.org,2002:null": "null",
    "tag:yaml.org,2002:timestamp": "str",
}


class RawYAMLError(ValueError):
    pass


def load_raw(text: str) -> Raw | None:
    """Parse YAML safely (SafeLoader's composer: no object construction) into raw nodes."""
    import yaml  # ~7 ms: not when the parsed file comes from the cache (config/cache.py)

    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise RawYAMLError(f"invalid YAML: {where}{problem}") from None
    except RecursionError:  # PyYAML's composer recurses once per nesting level
        raise RawYAMLError("invalid YAML: nested too deeply") from None
    if node is None:
        return None
    try:
        return _convert(node, depth=0, budget=[MAX_NODES])
    except yaml.YAMLError as exc:  # e.g. a `<<` merge of something that is not a mapping
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RawYAMLError(f"invalid YAML: {problem}") from None


# Aliases are expanded while converting: a "billion laughs" file must fail, not hang.
MAX_NODES = 100_000


def _convert(node: yaml.Node, depth: int, budget: list[int]) -> Raw:
    import yaml

    if depth > 50:
        raise RawYAMLError("invalid YAML: nested too deeply")
    budget[0] -= 1
    if budget[0] < 0:
        raise RawYAMLError(f"invalid YAML: more than {MAX_NODES} values (alias expansion?)")
    if isinstance(node, yaml.MappingNode):
        yaml.SafeLoader.flatten_mapping(_flattener(), node)
        out: dict[str, Raw] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise RawYAMLError(
                    f"invalid YAML: line {key_node.start_mark.line + 1}: keys must be plain text"
                )
            key = key_node.value
            if key in out:
                raise RawYAMLError(
                    f"invalid YAML: line {key_node.start_mark.line + 1}: duplicate key {key!r}"
                )
            out[key] = _convert(value_node, depth + 1, budget)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, depth + 1, budget) for item in node.value]
    assert isinstance(node, yaml.ScalarNode)
    tag = _TAGS.get(node.tag)
    if tag is None:
        raise RawYAMLError(
            f"invalid YAML: line {node.start_mark.line + 1}: unsupported tag {node.tag!r}"
        )
    return Scalar(
        text=node.value, tag=tag, quoted=node.style in ("'", '"'), line=node.start_mark.line + 1
    )


@functools.cache
def _flattener() -> Any:
    """flatten_mapping (for `<<` merge keys) needs a constructor instance; it keeps no state
    we use."""
    import yaml

    return yaml.SafeLoader("")
