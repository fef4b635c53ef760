"""
A chunk's header and a tensor's identity: declared once, used by every wire module.

`ChunkHeader` holds every field of `dff_msgs/msg/TensorChunk` except the payload, in
the message's order; the CDR codec writes and reads it, the reassembler checks it,
and a received tensor reports it. Pure Python.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

import numpy as np

# Little-endian float32: the byte order the CRC (and the wire) is defined in.
WIRE_DTYPE = np.dtype('<f4')
# 256 Ki float32 values = 1 MiB per message. Measured here: 1 MiB messages arrive
# within ~50 ms and stream faster than 4 MiB ones, whose first delivery often lags
# 0.2-0.6 s (benchmarks/transport_bench.py --chunk-elements).
DEFAULT_CHUNK_ELEMENTS = 1 << 18


class TensorKey(NamedTuple):
    """Identity of one tensor in flight."""

    model: str
    stream: str
    batch_seq: int
    kind: int

    def describe(self) -> str:
        return f'tensor {self.model}/{self.stream}#{self.batch_seq} (kind {self.kind})'


@dataclass(frozen=True)
class ChunkHeader:
    """Every TensorChunk field except the payload values."""

    sec: int
    nanosec: int
    model: str
    stream: str
    source: str
    batch_seq: int
    kind: int
    chunk_index: int
    chunk_count: int
    offset: int              # element offset of this chunk in the flat tensor
    shape: tuple[int, ...]   # the whole tensor's shape
    crc32: int               # of the tensor's identity and bytes (chunks.crc32_of)

    @classmethod
    def of(cls, key: TensorKey, chunk_index: int, chunk_count: int, offset: int,
           shape: tuple[int, ...], crc32: int, *, source: str = '', sec: int = 0,
           nanosec: int = 0) -> ChunkHeader:
        """Build a header from a tensor's key and one chunk's place in it."""
        return cls(sec, nanosec, key.model, key.stream, source, key.batch_seq, key.kind,
                   chunk_index, chunk_count, offset, tuple(shape), crc32)

    @cached_property
    def key(self) -> TensorKey:
        """Return the identity of the tensor this chunk belongs to."""
        return TensorKey(self.model, self.stream, self.batch_seq, self.kind)
