"""
ROS edge of the tensor transport: QoS, TensorChunk messages, sender and receiver.

The checks live in `core.chunking`; this module only converts between numpy
buffers and `dff_msgs/msg/TensorChunk` without per-element Python work. The hot
path never builds a Python message: senders publish the serialized chunk
(`core.tensor_cdr`, one payload copy) and receivers subscribe raw and read the
payload in place. Message objects (`tensor_to_msgs`, payloads through
`array.array.frombytes`) remain for tools and tests, and receivers take both.
"""
from __future__ import annotations

import array as std_array
from collections.abc import Iterator
from dataclasses import dataclass
import traceback
from typing import Optional, TYPE_CHECKING, Union

from builtin_interfaces.msg import Time
from dff_lifecycle.common.liveness import HEARTBEAT_LEASE_S
from dff_lifecycle.core.chunking import (ChunkError, ChunkMeta, crc32_of, DEFAULT_CHUNK_ELEMENTS,
                                         Reassembler, split_tensor, TensorKey, WIRE_DTYPE)
from dff_lifecycle.core.tensor_cdr import CdrError, ChunkHeader, decode_chunk, encode_chunk
from dff_msgs.msg import TensorChunk
import numpy as np
from rclpy.clock import Clock
from rclpy.duration import Duration
from rclpy.impl.rcutils_logger import RcutilsLogger
from rclpy.publisher import Publisher
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, LivelinessPolicy, QoSProfile,
                       ReliabilityPolicy)

if TYPE_CHECKING:  # torch costs ~2 s to import; ROS-only processes never need it
    import torch


TENSOR_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_ALL,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)
"""Tensor chunks: reliable + KEEP_ALL, so unread chunks wait in the reader's history
instead of being overwritten. A burst of 30 x 4 MiB tensors to a subscriber that
needs 0.1 s per message arrives complete with this profile, while a reliable
KEEP_LAST(10) delivered only 2-12 of 30 (benchmarks/transport_bench.py, qos_burst;
test/integration/test_transport_ros.py). The backlog costs memory on the reader,
so senders bound the number of tensors in flight. Volatile: a tensor only matters
to subscribers that exist when it is sent (publishers wait for a match first).
"""

STATUS_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=10,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)
"""Periodic status/progress messages: reliable, small queue; only recent ones matter."""

STATUS_LATCHED_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)
"""Latest state of each publisher, replayed to late joiners (e.g. a master that starts
after its layers). Publishers with this profile also serve STATUS_QOS subscribers."""


HEARTBEAT_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.BEST_EFFORT,
    durability=DurabilityPolicy.VOLATILE,
    liveliness=LivelinessPolicy.AUTOMATIC,
    liveliness_lease_duration=Duration(seconds=HEARTBEAT_LEASE_S),
)
"""Container heartbeats: only the latest beat matters, and a lost one is no loss. The
writer's liveliness is AUTOMATIC with the heartbeat lease: Fast DDS asserts it from its own
threads every 2/3 lease, so the master's liveliness event says "process gone" (dead, frozen,
cut off) independently of whether the server's Python is busy (master/heartbeats.py)."""

LAYER_STATUS_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=10,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)
"""Layer status publishers: like STATUS_QOS, plus the last messages for late joiners,
so a monitor started while a layer is idle still sees its state. The master subscribes
volatile (STATUS_QOS) and so never mistakes an earlier run's status for progress."""


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
    for chunk in chunks:
        yield (ChunkHeader(sec, nanosec, model, stream, source, batch_seq, kind, chunk.index,
                           len(chunks), chunk.offset, shape, crc), chunk.data)


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


def chunk_meta(msg: TensorChunk) -> ChunkMeta:
    """Return the header of `msg` in core terms."""
    key = TensorKey(msg.model, msg.stream, msg.batch_seq, msg.kind)
    return ChunkMeta(key, msg.chunk_index, msg.chunk_count, msg.offset, tuple(msg.shape),
                     msg.crc32)


class TensorSender:
    """Publishes every chunk of a tensor on one publisher (regular or lifecycle)."""

    def __init__(self, publisher: Publisher, *, source: str,
                 chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
                 clock: Optional[Clock] = None) -> None:
        if chunk_elements < 1:
            raise ValueError(f'chunk_elements must be >= 1, got {chunk_elements}')
        self._publisher = publisher
        self._source = source
        self._chunk_elements = chunk_elements
        self._clock = clock

    def send(self, array: np.ndarray, *, model: str, stream: str, batch_seq: int,
             kind: int) -> int:
        """
        Publish all chunks of `array`; return how many were published.

        Raises RuntimeError for an inactive lifecycle publisher, which would
        otherwise drop the tensor without a word. If `publish` fails part way, the
        receiver holds an incomplete tensor until it expires.
        """
        if not getattr(self._publisher, 'is_activated', True):
            raise RuntimeError(f'publisher on {self._publisher.topic_name} is not active; '
                               f'{TensorKey(model, stream, batch_seq, kind).describe()} not sent')
        stamp = self._clock.now().to_msg() if self._clock is not None else None
        count = 0
        # One serialized chunk at a time keeps the extra memory at one chunk.
        for data in iter_serialized_chunks(array, model=model, stream=stream,
                                           source=self._source, batch_seq=batch_seq, kind=kind,
                                           chunk_elements=self._chunk_elements, stamp=stamp):
            self._publisher.publish(data)
            count += 1
        return count


@dataclass(frozen=True)
class ReceivedTensor:
    """A complete, verified tensor."""

    model: str
    stream: str
    source: str
    batch_seq: int
    kind: int
    array: np.ndarray
    stamp: Time


class TensorReceiver:
    """
    Feeds TensorChunk messages to a Reassembler; safe to call from a subscription callback.

    Bad chunks and stale or evicted tensors are logged and counted in
    `rejected_tensors`; `on_message` never raises. Not thread-safe: call it from
    one mutually exclusive callback group.
    """

    def __init__(self, logger: RcutilsLogger, *, pending_timeout_s: float = 30.0,
                 max_pending: int = 16, max_pending_bytes: int = 1 << 30) -> None:
        self._logger = logger
        self._pending_timeout_s = pending_timeout_s
        self._reassembler = Reassembler(max_pending, max_pending_bytes,
                                        on_discard=self._on_discard)
        self.completed_tensors = 0
        self.rejected_tensors = 0
        self.last_error = ''

    @property
    def ignored_chunks(self) -> int:
        """Chunks that arrived after their tensor had already been rejected."""
        return self._reassembler.ignored_chunks

    def on_message(self, msg: Union[TensorChunk, bytes]) -> Optional[ReceivedTensor]:
        """Add one chunk (a message, or its serialized bytes from a raw subscription)."""
        try:
            self._reassembler.expire(self._pending_timeout_s)
            if isinstance(msg, (bytes, bytearray, memoryview)):
                header, payload = decode_chunk(msg)
                msg = _RawChunk(header)
                meta = ChunkMeta(TensorKey(header.model, header.stream, header.batch_seq,
                                           header.kind), header.chunk_index,
                                 header.chunk_count, header.offset, header.shape, header.crc32)
            else:
                meta, payload = chunk_meta(msg), payload_view(msg)
            array = self._reassembler.add(meta, payload)
        except (ChunkError, CdrError) as error:
            self._reject(f'rejected {error}')
            return None
        except Exception:  # a malformed message must not kill the executor
            source = getattr(msg, 'source', '?')
            self._reject(f'unexpected error on a chunk from {source!r}:\n{traceback.format_exc()}',
                         unexpected=True)
            return None
        if array is None:
            return None
        self.completed_tensors += 1
        return ReceivedTensor(msg.model, msg.stream, msg.source, msg.batch_seq, msg.kind,
                              array, msg.stamp)

    def expire(self) -> int:
        """Drop stale partial tensors (call from a timer when traffic may stop)."""
        return len(self._reassembler.expire(self._pending_timeout_s))

    def _on_discard(self, key: TensorKey, reason: str) -> None:
        self._reject(f'dropped incomplete {key.describe()}: {reason}')

    def _reject(self, text: str, unexpected: bool = False) -> None:
        self.rejected_tensors += 1
        self.last_error = text.splitlines()[0]
        (self._logger.error if unexpected else self._logger.warning)(text)


class _RawChunk:
    """The fields of a serialized chunk that a ReceivedTensor reports."""

    def __init__(self, header: ChunkHeader) -> None:
        self.model, self.stream, self.source = header.model, header.stream, header.source
        self.batch_seq, self.kind = header.batch_seq, header.kind
        self.stamp = Time(sec=header.sec, nanosec=header.nanosec)


def to_numpy(tensor: 'torch.Tensor') -> np.ndarray:
    """
    Return `tensor` as a float32 CPU numpy array.

    It shares the tensor's memory when that already is a contiguous float32 CPU tensor
    (otherwise one conversion copy).
    """
    import torch
    return tensor.detach().to(device='cpu', dtype=torch.float32).contiguous().numpy()


def from_numpy(array: np.ndarray, device: Union['torch.device', str]) -> 'torch.Tensor':
    """
    Return `array` as a float32 tensor on `device`.

    It shares `array`'s memory for a writable, contiguous float32 array and a CPU device.
    """
    import torch
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not array.flags.writeable:  # torch cannot safely share a read-only buffer
        array = array.copy()
    return torch.from_numpy(array).to(device)
