"""
A layer node's stage, read from its parameters: ports, shapes and fused pre- and post-ops.

The master's plan writes these parameters (master/plan.py); this checks them and
turns them into what the node builds. No ROS imports, so it is tested alone.
"""
from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Any, Mapping

from dff_lifecycle.common.ports import (decode_bindings, decode_shape, PEER_PORTS, PortBinding,
                                        positions, REPLICA_PORTS, SHARD_PORTS)
from dff_lifecycle.core.ff.layers import build_row, get_layer_type
from dff_lifecycle.core.stage.stage_ops import chain_modules, joined_shape, StageOps

OpEntry = tuple[str, tuple[int, ...], tuple[int, ...]]  # type, args, in shape


@dataclass(frozen=True)
class StageWiring:
    in_shape: tuple[int, ...]
    layer_args: tuple[int, ...]
    input_shapes: tuple[tuple[int, ...], ...]
    concat_dim: int
    post_ops: tuple[OpEntry, ...]
    inputs: tuple[PortBinding, ...]
    outputs: tuple[PortBinding, ...]
    positions: tuple[int, ...]      # join position of each input binding
    parameter_count: int
    pre_ops: tuple[OpEntry, ...] = ()  # after the join, before the layer

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
        post_ops, _ = _op_chain(s['post_ops'], 'post_ops', out_shape)
        pre_ops, pre_shape = _op_chain(s.get('pre_ops', ['']), 'pre_ops',
                                       joined_shape(shapes, s['concat_dim']))
        if pre_ops and math.prod(pre_shape) != math.prod(in_shape):
            raise ValueError(f'pre_ops turn the joined inputs into {list(pre_shape)}, which '
                             f'does not fit in_shape {list(in_shape)}')
        inputs = tuple(decode_bindings(s['inputs'], 'inputs'))
        outputs = tuple(decode_bindings(s['outputs'], 'outputs'))
        joined = positions(inputs)
        shards = int(s.get('shard_count', 1))
        replicas = int(s.get('replica_count', 1))
        if shards > 1 and replicas > 1:
            raise ValueError('a layer is either split (shard_count) or replicated '
                             '(replica_count), not both')
        for port in {b.port for b in inputs}:
            count = sum(1 for b in inputs if b.port == port)
            if port in PEER_PORTS:
                peers, what = ((shards, 'split in') if port in SHARD_PORTS
                               else (replicas, 'replicated'))
                if count != peers - 1:
                    raise ValueError(f'inputs: port {port!r} is bound {count} time(s), but a '
                                     f'layer {what} {peers} has {peers - 1} peer(s)')
            elif count != len(shapes):
                raise ValueError(f'inputs: port {port!r} is bound {count} time(s) but the stage '
                                 f'joins {len(shapes)} input(s) (input_shapes)')
        if not any(b.port not in PEER_PORTS for b in inputs):
            raise ValueError('inputs: no input port is bound, so the layer would hear nothing')
        if shards > 1 and not any(b.port in SHARD_PORTS for b in outputs):
            raise ValueError('outputs: a split layer must bind its partials port (its peers '
                             'wait for its partial sums)')
        if replicas > 1 and not any(b.port in REPLICA_PORTS for b in outputs):
            raise ValueError('outputs: a replicated layer must bind its sync port (its peers '
                             'wait for its weight snapshots)')
        if not any(b.port == 'status' for b in outputs):
            raise ValueError('outputs: the status port must be bound (the master follows it)')
        return cls(in_shape, args, shapes, s['concat_dim'], tuple(post_ops), inputs, outputs,
                   tuple(joined), kind.parameter_count([in_shape], list(args)), tuple(pre_ops))

    def output_topic(self, port: str) -> str:
        """Return the topic an output port publishes on; '' when the port is unbound."""
        return next((b.topic for b in self.outputs if b.port == port), '')

    def ops(self) -> StageOps:
        post = [build_row(name, [shape], list(args), seed=0)[0]
                for name, args, shape in self.post_ops]
        pre = chain_modules([(name, args) for name, args, _ in self.pre_ops],
                            joined_shape(self.input_shapes, self.concat_dim))
        return StageOps(self.input_shapes, self.concat_dim, post, pre)


def _op_chain(entries: Any, name: str, shape: tuple[int, ...]
              ) -> tuple[list[OpEntry], tuple[int, ...]]:
    """Parse "<Type> <args...>" entries of parameter-free rows; return them and the end shape."""
    chain = []
    for entry in entries:
        if not entry.strip():
            continue
        type_name, *values = entry.split()
        try:
            op_args = tuple(int(v) for v in values)
        except ValueError:
            raise ValueError(f'{name} entry {entry!r}: expected "<Type> <int args...>"') \
                from None
        op = get_layer_type(type_name)
        if op.trainable or op.max_inputs > 1:
            raise ValueError(f'{name} entry {entry!r}: only pools and Flatten run fused '
                             'around a layer')
        chain.append((type_name, op_args, shape))
        try:
            shape = op.out_shape([shape], list(op_args))
        except ValueError as err:
            raise ValueError(f'{name} entry {entry!r}: {err}') from None
    return chain, shape
