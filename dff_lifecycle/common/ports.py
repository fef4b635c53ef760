"""
Port bindings: which topic, of which message type, a layer node's port uses.

The master's plan derives them from the layer config's ports (params/layers.yaml) and
hands them to each layer node as string-list parameters, one entry per binding:
`"<port> <topic> <pkg/msg/Type>"`. A stage that joins several inputs (a Concat) has one
binding per joined source for each input port, in join order. No torch, no ROS.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

# What a layer node does with each port name; a layer type's ports must be among these.
TENSOR_TYPE = 'dff_msgs/msg/TensorChunk'
STATUS_TYPE = 'dff_msgs/msg/LayerStatus'
INPUT_PORTS = {'train': TENSOR_TYPE, 'infer': TENSOR_TYPE, 'partials': TENSOR_TYPE,
               'sync': TENSOR_TYPE}
OUTPUT_PORTS = {'train': TENSOR_TYPE, 'infer': TENSOR_TYPE, 'result': TENSOR_TYPE,
                'status': STATUS_TYPE, 'partials': TENSOR_TYPE, 'sync': TENSOR_TYPE}
# Bound by the plan, not by the layer config: the shards of a split layer exchange partial
# sums of squares on them (one binding per peer, in shard order).
SHARD_PORTS = ('partials',)
# ... and the replicas of a replicated layer their weight snapshots (one per peer, in order).
REPLICA_PORTS = ('sync',)
PEER_PORTS = SHARD_PORTS + REPLICA_PORTS


class PortBinding(NamedTuple):
    port: str
    topic: str
    msg_type: str

    def encode(self) -> str:
        return f'{self.port} {self.topic} {self.msg_type}'


def decode_bindings(entries: Sequence[str], side: str) -> list[PortBinding]:
    """
    Parse a node's `inputs` or `outputs` parameter; ValueError naming the bad entry.

    Empty entries are skipped ([''] is how a ROS string list says "none").
    """
    known = INPUT_PORTS if side == 'inputs' else OUTPUT_PORTS
    bindings = []
    for entry in entries:
        if not entry.strip():
            continue
        parts = entry.split()
        if len(parts) != 3 or not parts[1].startswith('/'):
            raise ValueError(f'{side} entry {entry!r}: expected "<port> </absolute/topic> '
                             '<pkg/msg/Type>"')
        port, topic, msg_type = parts
        if port not in known:
            raise ValueError(f'{side} entry {entry!r}: a layer node has no {side[:-1]} port '
                             f'{port!r} (known: {", ".join(known)})')
        if msg_type != known[port]:
            raise ValueError(f'{side} entry {entry!r}: port {port!r} carries {known[port]}, '
                             f'not {msg_type}')
        bindings.append(PortBinding(port, topic, msg_type))
    return bindings


def positions(bindings: Sequence[PortBinding]) -> list[int]:
    """For each binding, how many earlier bindings share its port (its join position)."""
    seen: dict[str, int] = {}
    out = []
    for binding in bindings:
        out.append(seen.get(binding.port, 0))
        seen[binding.port] = out[-1] + 1
    return out


def encode_shape(shape: Sequence[int]) -> str:
    return ','.join(str(int(d)) for d in shape)


def decode_shape(text: str, what: str) -> tuple[int, ...]:
    """Parse "C,H,W"; ValueError naming `what`."""
    try:
        shape = tuple(int(part) for part in text.split(','))
    except ValueError:
        raise ValueError(f'{what} must be comma-separated positive integers, got {text!r}') \
            from None
    if not shape or min(shape) < 1:
        raise ValueError(f'{what} must be comma-separated positive integers, got {text!r}')
    return shape
