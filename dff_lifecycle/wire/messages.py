"""
Tensors as chunk headers and payloads, as serialized chunks and as TensorChunk messages.

The hot path publishes serialized chunks (`iter_serialized_chunks`: one payload copy
into the bytes `wire.cdr` writes); message objects (`tensor_to_msgs`, payloads through
`array.array.frombytes`, never per element) remain for tools and tests.
"""
from __future__ import annotations

import array as std_array
from collections.abc import Iterator
from typing import Optional

from builtin_interfaces.msg import Time
from dff_lifecycle.wire.cdr import encode_chunk
from dff_lifecycle.wire.chunks import crc32_of, split_tensor
from dff_lifecycle.wire.header import ChunkHeader, TensorKey, WIRE_DTYPE
from dff_msgs.msg import TensorChunk
import numpy as np


def iter_chunks(array: np.ndarray, *, model: str, stream: str, source: str, batch_seq: int,
                kind: int, chunk_elements: int,
                stamp: Optional[Time] = None) -> Iterator[tuple[ChunkHeader, np.ndarray]]:
    """Yield (header, payload view) of each chunk of a float32 `array`; checks the shape."""
    shape = tuple(array.shape)
    if any(dim >= 1 << 32 for dim in shape):
        raise ValueError(f'tensor dimension too large for uint32 shape: {list(shape)}')
    crc = crc32_of(array, TensorKey(model, stream, batch_seq, kind), shape)
    chunks = split_tensor(array, chunk_elements)
    sec, nanosec = (stamp.sec, stamp.nanosec) if stamp is not None else (0, 0)
    key = TensorKey(model, stream, batch_seq, kind)
    for chunk in chunks:
        yield (ChunkHeader.of(key, chunk.index, len(chunks), chunk.offset, shape, crc,
                              source=source, sec=sec, nanosec=nanosec), chunk.data)


def iter_tensor_msgs(array: np.ndarray, **options) -> Iterator[TensorChunk]:
    """Yield the TensorChunk messages of `array` one by one (one payload copy each)."""
    for h, data in iter_chunks(array, **options):
        msg = TensorChunk(
            stamp=Time(sec=h.sec, nanosec=h.nanosec), model=h.model, stream=h.stream,
            source=h.source, batch_seq=h.batch_seq, kind=h.kind, chunk_index=h.chunk_index,
            chunk_count=h.chunk_count, offset=h.offset, shape=h.shape, crc32=h.crc32)
        payload = std_array.array('f')
        payload.frombytes(memoryview(data).cast('B'))  # memcpy, not per-element
        msg.payload.data = payload
        yield msg


def tensor_to_msgs(array: np.ndarray, **options) -> list[TensorChunk]:
    """All TensorChunk messages of a float32 `array` (options as for `iter_chunks`)."""
    return list(iter_tensor_msgs(array, **options))


def iter_serialized_chunks(array: np.ndarray, **options) -> Iterator[bytes]:
    """Yield each chunk of `array` as a serialized TensorChunk, ready for publish(bytes)."""
    for header, data in iter_chunks(array, **options):
        yield encode_chunk(header, data)


def payload_view(msg: TensorChunk) -> np.ndarray:
    """Return the chunk's values as a float32 array sharing the message's buffer (no copy)."""
    return np.frombuffer(msg.payload.data, dtype=WIRE_DTYPE)


def header_of(msg: TensorChunk) -> ChunkHeader:
    """Return the header of `msg` (everything but its payload)."""
    return ChunkHeader(msg.stamp.sec, msg.stamp.nanosec, msg.model, msg.stream, msg.source,
                       msg.batch_seq, msg.kind, msg.chunk_index, msg.chunk_count, msg.offset,
                       tuple(msg.shape), msg.crc32)
