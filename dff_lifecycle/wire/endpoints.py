"""
The two ends a node holds: a sender and a receiver of tensors.

`TensorSender` publishes a tensor's chunks, serialized; `TensorReceiver` takes chunks
(serialized bytes from a raw subscription, or messages) and hands back complete,
verified tensors.

The hot path never builds a Python message: a chunk's payload is copied once into
the bytes (`wire.cdr`) and read in place on the other side.
"""
from __future__ import annotations

from dataclasses import dataclass
import traceback
from typing import Optional, Union

from builtin_interfaces.msg import Time
from dff_lifecycle.wire.cdr import CdrError, decode_chunk
from dff_lifecycle.wire.chunks import ChunkError, Reassembler
from dff_lifecycle.wire.header import ChunkHeader, DEFAULT_CHUNK_ELEMENTS, TensorKey
from dff_lifecycle.wire.messages import header_of, iter_serialized_chunks, payload_view
from dff_msgs.msg import TensorChunk
import numpy as np
from rclpy.clock import Clock
from rclpy.impl.rcutils_logger import RcutilsLogger
from rclpy.publisher import Publisher


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
    """A complete, verified tensor and the header its chunks carried."""

    header: ChunkHeader
    array: np.ndarray

    @property
    def model(self) -> str:
        return self.header.model

    @property
    def stream(self) -> str:
        return self.header.stream

    @property
    def source(self) -> str:
        return self.header.source

    @property
    def batch_seq(self) -> int:
        return self.header.batch_seq

    @property
    def kind(self) -> int:
        return self.header.kind

    @property
    def stamp(self) -> Time:
        return Time(sec=self.header.sec, nanosec=self.header.nanosec)


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
            else:
                header, payload = header_of(msg), payload_view(msg)
            array = self._reassembler.add(header, payload)
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
        return ReceivedTensor(header, array)

    def expire(self) -> int:
        """Drop stale partial tensors (call from a timer when traffic may stop)."""
        return len(self._reassembler.expire(self._pending_timeout_s))

    def _on_discard(self, key: TensorKey, reason: str) -> None:
        self._reject(f'dropped incomplete {key.describe()}: {reason}')

    def _reject(self, text: str, unexpected: bool = False) -> None:
        self.rejected_tensors += 1
        self.last_error = text.splitlines()[0]
        (self._logger.error if unexpected else self._logger.warning)(text)
