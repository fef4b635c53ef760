"""
Declare and read a node's ROS parameters from its table (`common.parameter_table`).

Every node setting is a declared parameter with a description (and a range
where one applies), so it can come from a parameter YAML or `--ros-args -p`.
"""
from __future__ import annotations

from typing import Any

from dff_lifecycle.common.parameter_table import Param, ParameterTable
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType
from rclpy.exceptions import (InvalidParameterTypeException, InvalidParameterValueException,
                              ParameterUninitializedException)
from rclpy.node import Node
from rclpy.parameter import Parameter

_UNSET = {
    bool: Parameter.Type.BOOL,
    int: Parameter.Type.INTEGER,
    float: Parameter.Type.DOUBLE,
    str: Parameter.Type.STRING,
    list: Parameter.Type.STRING_ARRAY,
}
_TYPES = {
    bool: ParameterType.PARAMETER_BOOL,
    int: ParameterType.PARAMETER_INTEGER,
    float: ParameterType.PARAMETER_DOUBLE,
    str: ParameterType.PARAMETER_STRING,
    list: ParameterType.PARAMETER_STRING_ARRAY,
}


class ParameterError(ValueError):
    """A parameter given on the command line or in a file that the node cannot use."""


class MissingParameterError(ParameterError):
    """A required parameter was not given."""


class ParameterTypeError(ParameterError):
    """A parameter was given with a type its table does not accept."""


def descriptor(name: str, spec: Param) -> ParameterDescriptor:
    """Build the ParameterDescriptor of one table entry: type, description, range."""
    text = f'(required) {spec.description}' if spec.required else spec.description
    d = ParameterDescriptor(name=name, type=_TYPES[spec.type], description=text)
    if spec.minimum is not None or spec.maximum is not None:
        lo = spec.minimum if spec.minimum is not None else -1e300
        hi = spec.maximum if spec.maximum is not None else 1e300
        if spec.type is int:
            d.integer_range = [IntegerRange(from_value=int(max(lo, -2**62)),
                                            to_value=int(min(hi, 2**62)), step=0)]
        elif spec.type is float:
            d.floating_point_range = [FloatingPointRange(from_value=float(lo),
                                                         to_value=float(hi), step=0.0)]
    return d


def _widen_overrides(node: Node, table: ParameterTable) -> None:
    """
    Accept what ROS users type: `-p timeout_s:=3` for a float, `-p name:=42` for a string.

    rcl parses `3` as an integer and rclpy then refuses it for a float parameter; the
    override is widened before declaration, where the value is unambiguous.
    """
    overrides = getattr(node, '_parameter_overrides', None)
    if not isinstance(overrides, dict):
        return
    for name, spec in table.items():
        given = overrides.get(name)
        if given is None:
            continue
        if (spec.type is float and given.type_ == Parameter.Type.INTEGER):
            overrides[name] = Parameter(name, Parameter.Type.DOUBLE, float(given.value))
        elif (spec.type is str and given.type_ in (Parameter.Type.INTEGER, Parameter.Type.DOUBLE,
                                                   Parameter.Type.BOOL)):
            overrides[name] = Parameter(name, Parameter.Type.STRING, str(given.value))
        elif (spec.type is list and given.type_ == Parameter.Type.STRING):
            overrides[name] = Parameter(name, Parameter.Type.STRING_ARRAY, [given.value])


def declare_all(node: Node, table: ParameterTable) -> None:
    """Declare every table entry; a given value of the wrong type is a ParameterTypeError."""
    _widen_overrides(node, table)
    for name, spec in table.items():
        try:
            if spec.required:
                node.declare_parameter(name, _UNSET[spec.type], descriptor(name, spec))
            else:
                default = float(spec.default) if spec.type is float else spec.default
                node.declare_parameter(name, default, descriptor(name, spec))
        except (InvalidParameterTypeException, InvalidParameterValueException) as exc:
            given = getattr(node, '_parameter_overrides', {}).get(name)
            shown = repr(given.value) if given is not None else '?'
            raise ParameterTypeError(f'parameter "{name}" must be {spec.type.__name__}'
                                     f'{_range_text(spec)}, got {shown}') from exc


def _range_text(spec: Param) -> str:
    if spec.minimum is None and spec.maximum is None:
        return ''
    lo = '' if spec.minimum is None else f'>= {spec.minimum}'
    hi = '' if spec.maximum is None else f'<= {spec.maximum}'
    return ' ' + ' and '.join(t for t in (lo, hi) if t)


def read_all(node: Node, table: ParameterTable) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, spec in table.items():
        try:
            value = node.get_parameter(name).value
        except ParameterUninitializedException:  # declared by type only and never given
            value = None
        if value is None:
            raise MissingParameterError(f'parameter "{name}" is required: {spec.description}')
        values[name] = list(value) if spec.type is list else value
    return values
