"""
A layer node's stage, read from its parameters: ports, shapes and fused post-ops.

The master's plan writes these parameters (master/plan.py); this checks them and
turns them into what the node builds. No ROS imports, so it is tested alone.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from dff_lifecycle.common.ports import (decode_bindings, decode_shape, PortBinding,
                                        positions)
from dff_lifecycle.core.ff_layers import build_row, get_layer_type
from dff_lifecycle.core.stage_ops import StageOps


@dataclass(frozen=True)
class StageWiring:
    in_shape: tuple[int, ...]
    layer_args: tuple[int, ...]
    input_shapes: tuple[tuple[int, ...], ...]
    concat_dim: int
    post_ops: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...]  # type, args, in shape
    inputs: tuple[PortBinding, ...]
    outputs: tuple[PortBinding, ...]
    positions: tuple[int, ...]      # join position of each input binding
    parameter_count: int

    @classmethod
    def from_parameters(cls, s: Mapping[str, Any]) -> 'StageWiring':
        """Check the stage parameters of a layer node; ValueError names the parameter."""
        kind = get_layer_type(s['layer_type'])
        if not kind.trainable:
            raise ValueError(f'layer_type {s["layer_type"]} trains nothing: it runs fused in '
                             'the stage of a trainable layer, not as a node')
        in_shape = (decode_shape(s['in_shape'], 'in_shape') if s['in_shape']
                    else (s['in_features'],))
        args = (decode_shape(s['layer_args'], 'layer_args') if s['layer_args']
                else (s['out_features'],))
        out_shape = kind.out_shape([in_shape], list(args))
        shapes = tuple(decode_shape(text, 'input_shapes') for text in s['input_shapes']
                       if text.strip()) or (in_shape,)
        post_ops, shape = [], out_shape
        for entry in s['post_ops']:
            if not entry.strip():
                continue
            name, *values = entry.split()
            try:
                op_args = tuple(int(v) for v in values)
            except ValueError:
                raise ValueError(f'post_ops entry {entry!r}: expected "<Type> <int args...>"') \
                    from None
            op = get_layer_type(name)
            if op.trainable or op.max_inputs > 1:
                raise ValueError(f'post_ops entry {entry!r}: only pools and Flatten run after '
                                 'a layer')
            post_ops.append((name, op_args, shape))
            shape = op.out_shape([shape], list(op_args))
        inputs = tuple(decode_bindings(s['inputs'], 'inputs'))
        outputs = tuple(decode_bindings(s['outputs'], 'outputs'))
        joined = positions(inputs)
        for port in {b.port for b in inputs}:
            count = sum(1 for b in inputs if b.port == port)
            if count != len(shapes):
                raise ValueError(f'inputs: port {port!r} is bound {count} time(s) but the stage '
                                 f'joins {len(shapes)} input(s) (input_shapes)')
        if not inputs:
            raise ValueError('inputs: no input port is bound, so the layer would hear nothing')
        if not any(b.port == 'status' for b in outputs):
            raise ValueError('outputs: the status port must be bound (the master follows it)')
        return cls(in_shape, args, shapes, s['concat_dim'], tuple(post_ops), inputs, outputs,
                   tuple(joined), kind.parameter_count([in_shape], list(args)))

    def output_topic(self, port: str) -> str:
        """Return the topic an output port publishes on; '' when the port is unbound."""
        return next((b.topic for b in self.outputs if b.port == port), '')

    def ops(self) -> StageOps:
        modules = [build_row(name, [shape], list(args), seed=0)[0]
                   for name, args, shape in self.post_ops]
        return StageOps(self.input_shapes, self.concat_dim, modules)
