"""
dff_msgs/msg/TensorChunk in its serialized (CDR) form, built and read without rclpy.

The hot path publishes these bytes (`Publisher.publish(bytes)`) and takes them from
raw subscriptions, so a chunk's payload is copied once into the message and read
in place by `np.frombuffer`: no Python message object, no per-field conversion.
The bytes are exactly what rmw_fastrtps writes for the message (plain CDR, little
endian, 8-byte alignment for 64-bit fields), so `ros2 topic echo` and every other
subscriber decode them; the unit tests check both directions against
`rclpy.serialization`. Pure Python and numpy.
"""
from __future__ import annotations

import struct
from typing import Sequence

from dff_lifecycle.wire.header import ChunkHeader, WIRE_DTYPE
import numpy as np

ENCAPSULATION = b'\x00\x01\x00\x00'   # CDR, little endian


class CdrError(ValueError):
    """Bytes that are not a well-formed serialized TensorChunk."""


class _Writer:

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0  # bytes after the encapsulation header

    def _put(self, data: bytes) -> None:
        self.parts.append(data)
        self.size += len(data)

    def align(self, n: int) -> None:
        pad = -self.size % n
        if pad:
            self._put(b'\x00' * pad)

    def pack(self, fmt: str, *values: object) -> None:
        self.align(struct.calcsize(fmt[-1]))
        self._put(struct.pack('<' + fmt, *values))

    def string(self, text: str) -> None:
        data = text.encode('utf-8') + b'\x00'
        self.pack('I', len(data))
        self._put(data)


def encode_chunk(header: ChunkHeader, payload: np.ndarray) -> bytes:
    """Return the serialized TensorChunk; `payload` is a flat float32 array (copied once)."""
    values = np.ascontiguousarray(payload, dtype=WIRE_DTYPE).reshape(-1)
    w = _Writer()
    w.pack('iI', header.sec, header.nanosec)
    for text in (header.model, header.stream, header.source):
        w.string(text)
    w.pack('Q', header.batch_seq)
    w.pack('B', header.kind)
    w.pack('II', header.chunk_index, header.chunk_count)
    w.pack('Q', header.offset)
    w.pack('I', len(header.shape))
    if header.shape:
        w.pack(f'{len(header.shape)}I', *header.shape)
    w.pack('I', header.crc32)
    w.pack('III', 0, 0, values.size)  # layout: no dims, data_offset 0; then the data length
    return b''.join([ENCAPSULATION, *w.parts, memoryview(values).cast('B')])


class _Reader:

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = len(ENCAPSULATION)

    def unpack(self, fmt: str) -> tuple:
        size = struct.calcsize(fmt[-1])
        self.pos += -(self.pos - len(ENCAPSULATION)) % size
        end = self.pos + struct.calcsize('<' + fmt)
        if end > len(self.data):
            raise CdrError(f'serialized TensorChunk cut short at byte {self.pos}')
        values = struct.unpack_from('<' + fmt, self.data, self.pos)
        self.pos = end
        return values

    def string(self) -> str:
        (length,) = self.unpack('I')
        end = self.pos + length
        if length < 1 or end > len(self.data) or self.data[end - 1] != 0:
            raise CdrError('malformed string in a serialized TensorChunk')
        text = bytes(self.data[self.pos:end - 1]).decode('utf-8', errors='replace')
        self.pos = end
        return text


def decode_chunk(data: bytes) -> tuple[ChunkHeader, np.ndarray]:
    """Return the header and the payload as a read-only float32 view into `data`."""
    if len(data) < len(ENCAPSULATION) or bytes(data[:2]) != ENCAPSULATION[:2]:
        raise CdrError('not a little-endian CDR TensorChunk')
    r = _Reader(data)
    sec, nanosec = r.unpack('iI')
    model, stream, source = r.string(), r.string(), r.string()
    (batch_seq,) = r.unpack('Q')
    (kind,) = r.unpack('B')
    chunk_index, chunk_count = r.unpack('II')
    (offset,) = r.unpack('Q')
    (ndim,) = r.unpack('I')
    if ndim > 32:
        raise CdrError(f'a tensor with {ndim} dimensions')
    shape = r.unpack(f'{ndim}I') if ndim else ()
    (crc32,) = r.unpack('I')
    (dims,) = r.unpack('I')
    for _ in range(min(dims, 64)):  # layout labels are ignored, but must be skipped
        r.string()
        r.unpack('II')
    r.unpack('I')  # data_offset
    (count,) = r.unpack('I')
    if r.pos + 4 * count > len(data):
        raise CdrError('payload shorter than its length says')
    payload = np.frombuffer(data, dtype=WIRE_DTYPE, count=count, offset=r.pos)
    return ChunkHeader(sec, nanosec, model, stream, source, batch_seq, kind, chunk_index,
                       chunk_count, offset, tuple(shape), crc32), payload


__all__: Sequence[str] = ['ChunkHeader', 'CdrError', 'decode_chunk', 'encode_chunk']
