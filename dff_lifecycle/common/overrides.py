"""
Model-config overrides: `dotted.key:=yaml value` items, parsed and applied to plain data.

The syntax the `train` action's goal, its client (`dff_train_action -o`) and the
master agree on. Keys walk mappings by name and lists by index
(`layers.0.2.0:=128`); values are YAML, as with `--ros-args -p` (`0.01`, `true`,
`[1, 2]`; an empty value is null). What the result means is checked afterwards by
`core.config`, in one place, so a misspelt key is refused there with the known keys.
No torch, no ROS.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import yaml

SEPARATOR = ':='


class OverrideError(ValueError):
    """An override that cannot be parsed or applied; the message names it."""


@dataclass(frozen=True)
class Override:
    keys: tuple[str, ...]
    value: Any
    text: str  # as given, for messages


def parse_override(text: str) -> Override:
    """Parse `dotted.key:=value`; raise OverrideError naming the item."""
    key, sep, raw = text.partition(SEPARATOR)
    keys = tuple(key.strip().split('.'))
    if not sep or not all(keys):
        raise OverrideError(f'{text!r}: expected dotted.key:=value, e.g. '
                            "'training.batch_size:=500'")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as err:
        problem = getattr(err, 'problem', None) or str(err).splitlines()[0]
        raise OverrideError(f'{text!r}: the value is not YAML: {problem}') from err
    return Override(keys, value, text)


def apply_overrides(data: Mapping[str, Any], items: Iterable[str | Override]) -> dict:
    """
    Return a deep copy of `data` with every override applied, in order (later ones win).

    A missing (or null) mapping on the way is created, so `head.hidden:=100` works on a
    model without a head (the config check names unknown keys); a list index must exist.
    """
    out = copy.deepcopy(dict(data))
    for item in items:
        override = item if isinstance(item, Override) else parse_override(item)
        node: Any = out
        for depth, key in enumerate(override.keys):
            where = '.'.join(override.keys[:depth]) or 'the top level'
            if isinstance(node, list):
                key = _index(override, key, len(node), where)
            elif not isinstance(node, dict):
                raise OverrideError(f'{override.text!r}: {where} is {type(node).__name__} '
                                    f'{node!r}, not a mapping or a list')
            if depth == len(override.keys) - 1:
                node[key] = override.value
            else:
                if isinstance(node, dict) and node.get(key) is None:
                    node[key] = {}
                node = node[key]
    return out


def _index(override: Override, key: str, length: int, where: str) -> int:
    try:
        index = int(key)
    except ValueError:
        raise OverrideError(f'{override.text!r}: {where} is a list: {key!r} is not an '
                            'index') from None
    if not 0 <= index < length:
        raise OverrideError(f'{override.text!r}: {where} has {length} item(s): no index '
                            f'{index}')
    return index
