"""
Cut float32 tensors into chunks and put them back together, with checks.

Pure numpy: the codec (`wire.cdr`) and the messages (`wire.messages`) turn chunks
into bytes or messages and back into a `ChunkHeader` and a payload array. A tensor
is identified by `TensorKey(model, stream, batch_seq, kind)`.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
import math
import time
from typing import Callable, Optional
import zlib

from dff_lifecycle.wire.header import ChunkHeader, TensorKey, WIRE_DTYPE
import numpy as np

try:  # Intel ISA-L: the same CRC-32 as zlib's, with carry-less multiplication (70 GB/s here)
    from isal.isal_zlib import crc32
except ImportError:  # zlib's own: 2 GB/s here, a millisecond per MiB sent or received
    crc32 = zlib.crc32


class ChunkError(ValueError):
    """A chunk (or the tensor it belongs to) failed a reassembly check."""

    def __init__(self, message: str, key: Optional[TensorKey] = None) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class ChunkView:
    """One chunk of a flat tensor: a view into the sender's buffer, never a copy."""

    index: int
    offset: int  # element offset in the flat tensor
    count: int   # number of elements in this chunk
    data: np.ndarray


def _flat_float32(array: np.ndarray) -> np.ndarray:
    """Flat little-endian float32 view; copies only a non-contiguous input."""
    if array.dtype != WIRE_DTYPE:
        raise ValueError(f'expected a float32 array, got {array.dtype}; convert it explicitly')
    return np.ascontiguousarray(array).reshape(-1)


def split_tensor(array: np.ndarray, chunk_elements: int) -> list[ChunkView]:
    """
    Cut `array` into chunks of at most `chunk_elements` values (views, no copies).

    An empty tensor still yields one (empty) chunk, so that it can be sent.
    """
    if chunk_elements < 1:
        raise ValueError(f'chunk_elements must be >= 1, got {chunk_elements}')
    flat = _flat_float32(array)
    chunks = []
    for index, offset in enumerate(range(0, max(flat.size, 1), chunk_elements)):
        part = flat[offset:offset + chunk_elements]
        chunks.append(ChunkView(index, offset, part.size, part))
    return chunks


def crc32_of(array: np.ndarray, key: Optional[TensorKey] = None,
             shape: Optional[tuple[int, ...]] = None) -> int:
    """
    CRC-32 (zlib's polynomial) of the tensor's identity and its little-endian float32 bytes.

    With `key` the CRC also covers the key and `shape` (array.shape by default), so a
    corrupted header (another batch_seq, kind or shape) cannot pass a valid payload off
    as a different tensor. Without it, the CRC of the bytes alone.
    """
    data = memoryview(_flat_float32(array)).cast('B')
    if key is None:
        return crc32(data)
    dims = tuple(array.shape if shape is None else shape)
    identity = '\x1f'.join((key.model, key.stream, str(key.batch_seq), str(key.kind),
                            ','.join(map(str, dims))))
    return crc32(data, crc32(identity.encode('utf-8', 'surrogatepass')))


@dataclass
class _PartialTensor:
    """Receive state of one tensor: its preallocated buffer and what has arrived."""

    shape: tuple[int, ...]
    chunk_count: int
    crc32: int
    buffer: np.ndarray
    spans: dict[int, tuple[int, int]]  # chunk_index -> (offset, count)
    last_update_s: float

    def check_consistent(self, meta: ChunkHeader) -> None:
        if meta.chunk_count != self.chunk_count:
            raise ChunkError(f'chunk_count changed from {self.chunk_count} to {meta.chunk_count}')
        if meta.shape != self.shape:
            raise ChunkError(f'shape changed from {list(self.shape)} to {list(meta.shape)}')
        if meta.crc32 != self.crc32:
            raise ChunkError('crc32 changed between chunks of one tensor')

    def check_tiling(self) -> None:
        """Every element is covered exactly once (no gap, no overlap)."""
        expected = 0
        for offset, count in sorted(self.spans.values()):
            if offset != expected:
                raise ChunkError(f'chunks do not tile the tensor: expected offset {expected}, '
                                 f'got {offset}')
            expected = offset + count
        if expected != self.buffer.size:
            raise ChunkError(f'chunks cover {expected} of {self.buffer.size} elements')


DiscardHook = Callable[[TensorKey, str], None]


class Reassembler:
    """
    Collects chunks per `TensorKey` into one preallocated buffer per tensor.

    Each payload is copied exactly once, into its place in the buffer. A failed
    check raises `ChunkError` and drops that tensor; its remaining chunks are then
    ignored (counted in `ignored_chunks`) instead of starting a new partial tensor.
    Memory stays bounded: at most `max_pending` tensors / `max_pending_bytes`
    are held, the least recently updated is evicted first, and `expire()` drops
    tensors that stopped receiving chunks. Evictions and expiries are reported
    through `on_discard(key, reason)`.
    """

    def __init__(self, max_pending: int = 16, max_pending_bytes: int = 1 << 30,
                 on_discard: Optional[DiscardHook] = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_pending < 1 or max_pending_bytes < 1:
            raise ValueError('max_pending and max_pending_bytes must be >= 1')
        self.max_pending = max_pending
        self.max_pending_bytes = max_pending_bytes
        self._on_discard = on_discard
        self._clock = clock
        self._pending: OrderedDict[TensorKey, _PartialTensor] = OrderedDict()
        # Recently rejected keys, so the rest of a bad tensor's chunks are dropped at
        # once instead of starting a partial tensor that could only expire.
        self._rejected: OrderedDict[TensorKey, float] = OrderedDict()
        self.ignored_chunks = 0

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    @property
    def pending_bytes(self) -> int:
        return sum(p.buffer.nbytes for p in self._pending.values())

    def add(self, meta: ChunkHeader, payload: np.ndarray) -> Optional[np.ndarray]:
        """Store one chunk; return the tensor (shaped) once all its chunks arrived."""
        if meta.key in self._rejected:
            self.ignored_chunks += 1
            return None
        try:
            return self._add(meta, payload)
        except ChunkError as error:
            self._reject(meta.key)
            raise ChunkError(f'{meta.key.describe()}: {error}', meta.key) from None

    def expire(self, older_than_s: float) -> list[TensorKey]:
        """Drop tensors whose last chunk arrived more than `older_than_s` ago."""
        now = self._clock()
        stale = [k for k, p in self._pending.items() if now - p.last_update_s > older_than_s]
        for key in stale:
            self._discard(key, f'no chunk for more than {older_than_s:g} s')
        for key in [k for k, t in self._rejected.items() if now - t > older_than_s]:
            del self._rejected[key]
        return stale

    def _add(self, meta: ChunkHeader, payload: np.ndarray) -> Optional[np.ndarray]:
        partial = self._pending.get(meta.key)
        if partial is None:
            partial = self._start(meta)
        else:
            partial.check_consistent(meta)
            self._pending.move_to_end(meta.key)
        self._place(partial, meta, payload)
        if len(partial.spans) < partial.chunk_count:
            return None
        del self._pending[meta.key]
        partial.check_tiling()
        crc = crc32_of(partial.buffer, meta.key, partial.shape)
        if crc != partial.crc32:
            raise ChunkError(f'CRC-32 mismatch (got {crc:#010x}, header {partial.crc32:#010x})')
        return partial.buffer.reshape(partial.shape)

    def _start(self, meta: ChunkHeader) -> _PartialTensor:
        if meta.chunk_count < 1:
            raise ChunkError(f'chunk_count must be >= 1, got {meta.chunk_count}')
        if any(dim < 0 for dim in meta.shape):
            raise ChunkError(f'negative dimension in shape {list(meta.shape)}')
        elements = math.prod(meta.shape)
        if elements * WIRE_DTYPE.itemsize > self.max_pending_bytes:
            raise ChunkError(f'shape {list(meta.shape)} needs more than max_pending_bytes='
                             f'{self.max_pending_bytes}')
        if meta.chunk_count > max(elements, 1):
            raise ChunkError(f'{meta.chunk_count} chunks for only {elements} elements')
        self._make_room(elements * WIRE_DTYPE.itemsize)
        partial = _PartialTensor(meta.shape, meta.chunk_count, meta.crc32,
                                 np.empty(elements, WIRE_DTYPE), {}, self._clock())
        self._pending[meta.key] = partial
        return partial

    def _place(self, partial: _PartialTensor, meta: ChunkHeader, payload: np.ndarray) -> None:
        if not 0 <= meta.chunk_index < partial.chunk_count:
            last = partial.chunk_count - 1
            raise ChunkError(f'chunk_index {meta.chunk_index} outside 0..{last}')
        if meta.chunk_index in partial.spans:
            raise ChunkError(f'duplicate chunk {meta.chunk_index}')
        if payload.dtype != WIRE_DTYPE or payload.ndim != 1:
            raise ChunkError(f'payload must be 1-D float32, got {payload.dtype} {payload.shape}')
        if payload.size == 0 and partial.buffer.size > 0:
            raise ChunkError(f'chunk {meta.chunk_index} is empty')
        end = meta.offset + payload.size
        if meta.offset < 0 or end > partial.buffer.size:
            raise ChunkError(f'chunk {meta.chunk_index} spans [{meta.offset}, {end}) outside '
                             f'the {partial.buffer.size} elements of shape {list(partial.shape)}')
        partial.buffer[meta.offset:end] = payload  # the one copy per chunk
        partial.spans[meta.chunk_index] = (meta.offset, payload.size)
        partial.last_update_s = self._clock()

    def _make_room(self, new_bytes: int) -> None:
        while self._pending and (len(self._pending) >= self.max_pending
                                 or self.pending_bytes + new_bytes > self.max_pending_bytes):
            oldest = next(iter(self._pending))
            self._discard(oldest, 'evicted to bound the pending tensors')

    def _discard(self, key: TensorKey, reason: str) -> None:
        del self._pending[key]
        if self._on_discard is not None:
            self._on_discard(key, reason)

    def _reject(self, key: TensorKey) -> None:
        self._pending.pop(key, None)
        self._rejected[key] = self._clock()
        while len(self._rejected) > 4 * self.max_pending:
            self._rejected.popitem(last=False)
