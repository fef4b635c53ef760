"""Declared ROS parameters, one table per node.

Every node setting is a declared parameter with a description (and a range
where one applies), so it can come from a parameter YAML or `--ros-args -p`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                ParameterType)
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


@dataclass(frozen=True)
class Param:
    """One parameter: type, default (None: required), description, optional range."""

    type: type
    default: Any
    description: str
    minimum: Optional[float] = None
    maximum: Optional[float] = None

    def descriptor(self, name: str) -> ParameterDescriptor:
        text = self.description if self.default is not None else f'(required) {self.description}'
        d = ParameterDescriptor(name=name, type=_TYPES[self.type], description=text)
        if self.minimum is not None or self.maximum is not None:
            lo = self.minimum if self.minimum is not None else -1e300
            hi = self.maximum if self.maximum is not None else 1e300
            if self.type is int:
                d.integer_range = [IntegerRange(from_value=int(max(lo, -2**62)),
                                                to_value=int(min(hi, 2**62)), step=0)]
            elif self.type is float:
                d.floating_point_range = [FloatingPointRange(from_value=float(lo),
                                                             to_value=float(hi), step=0.0)]
        return d


class MissingParameterError(ValueError):
    """A required parameter was not given."""


def declare_all(node: Node, table: Mapping[str, Param]) -> None:
    for name, spec in table.items():
        descriptor = spec.descriptor(name)
        if spec.default is None:
            node.declare_parameter(name, _UNSET[spec.type], descriptor)
        else:
            default = float(spec.default) if spec.type is float else spec.default
            node.declare_parameter(name, default, descriptor)


def read_all(node: Node, table: Mapping[str, Param]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, spec in table.items():
        value = node.get_parameter(name).value
        if value is None:
            raise MissingParameterError(f'parameter "{name}" is required: {spec.description}')
        values[name] = list(value) if spec.type is list else value
    return values
