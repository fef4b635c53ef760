"""
Declare and read a node's ROS parameters from its table (`common.parameter_table`).

Every node setting is a declared parameter with a description (and a range
where one applies), so it can come from a parameter YAML or `--ros-args -p`.
"""
from __future__ import annotations

from typing import Any

from dff_lifecycle.common.parameter_table import Param, ParameterTable
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType
from rclpy.exceptions import ParameterUninitializedException
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


class MissingParameterError(ValueError):
    """A required parameter was not given."""


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


def declare_all(node: Node, table: ParameterTable) -> None:
    for name, spec in table.items():
        if spec.required:
            node.declare_parameter(name, _UNSET[spec.type], descriptor(name, spec))
        else:
            default = float(spec.default) if spec.type is float else spec.default
            node.declare_parameter(name, default, descriptor(name, spec))


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
