"""
Parameter tables: each node's ROS parameters, declared once as data.

A table maps a parameter name to a `Param` (type, default, description,
range). The nodes declare their parameters from it (`dff_lifecycle.ros.parameters`),
the launcher checks deployment files and `-p` overrides against it, and the
docs print it; nothing here imports torch or rclpy, so the launcher and the
tools read the tables in milliseconds.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

# Python types a parameter may have, and how the ROS type is called in messages.
TYPE_NAMES = {bool: 'true or false', int: 'an integer', float: 'a double', str: 'a string',
              list: 'a list of strings'}


@dataclass(frozen=True)
class Param:
    """One parameter: type, default (None: required), description, optional range."""

    type: type  # noqa: A003 (the public field name, read throughout the package)
    default: Any
    description: str
    minimum: Optional[float] = None
    maximum: Optional[float] = None

    def __post_init__(self) -> None:
        if self.type not in TYPE_NAMES:
            raise TypeError(f'unsupported parameter type {self.type!r}')

    @property
    def required(self) -> bool:
        return self.default is None


ParameterTable = Mapping[str, Param]


def types_of(table: ParameterTable) -> dict[str, type]:
    """{name: python type} of a table."""
    return {name: p.type for name, p in table.items()}


def _kind(value: Any) -> str:
    return 'nothing' if value is None else f'{type(value).__name__} {value!r}'[:80]


def type_problem(value: Any, expected: type) -> str:
    """Why `value` cannot be a ROS parameter of Python type `expected` ('' if it can)."""
    if expected is bool:
        ok = isinstance(value, bool)
    elif expected is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif expected is float:
        if isinstance(value, int) and not isinstance(value, bool):
            return f'{value} is an integer but the parameter is a double; write {value}.0'
        ok = isinstance(value, float)
    elif expected is str:
        ok = isinstance(value, str)
    elif expected is list:
        if value == []:
            return 'an empty list has no ROS type; write [""] for "none"'
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    else:
        ok = isinstance(value, expected)
    return '' if ok else (f'expected {TYPE_NAMES.get(expected, expected.__name__)}, '
                          f'got {_kind(value)}')


def coerce(value: Any, expected: type) -> Any:
    """
    Return a value typed by hand as the parameter's type.

    1 -> 1.0 for a double, 3 -> '3' for a string, 'a' -> ['a'] for a list. Raises
    ValueError (the reason) when it cannot be.
    """
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is str and not isinstance(value, str) and value is not None:
        return str(value)
    if expected is list and isinstance(value, str):
        return [value]
    problem = type_problem(value, expected)
    if problem:
        raise ValueError(problem)
    return value
