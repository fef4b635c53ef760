"""Serialized TensorChunks built and read without rclpy match rclpy's own serialization."""
from __future__ import annotations

from dff_lifecycle.wire.cdr import CdrError, decode_chunk, encode_chunk
from dff_lifecycle.wire.endpoints import TensorReceiver
from dff_lifecycle.wire.header import ChunkHeader
from dff_lifecycle.wire.messages import iter_serialized_chunks, tensor_to_msgs
from dff_msgs.msg import TensorChunk
import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from std_msgs.msg import MultiArrayDimension

CASES = [('ab', 'xyz', 's', (2, 3)), ('mnist_ff', 'train_1', '/dff/m/layer_0', (10,)),
         ('', '', '', ()), ('modèle', 'a' * 17, 'b', (1, 2, 3, 4, 5))]


@pytest.mark.parametrize('model,stream,source,shape', CASES)
def test_our_bytes_are_what_ros_decodes(model, stream, source, shape):
    values = np.arange(int(np.prod(shape)) if shape else 3, dtype=np.float32)
    header = ChunkHeader(5, 6, model, stream, source, 2 ** 40 + 3, 6, 1, 3, 2 ** 33 + 1,
                         shape, 0xDEADBEEF)
    msg = deserialize_message(encode_chunk(header, values), TensorChunk)
    assert (msg.model, msg.stream, msg.source) == (model, stream, source)
    assert (msg.batch_seq, msg.kind, msg.chunk_index, msg.chunk_count, msg.offset) == (
        2 ** 40 + 3, 6, 1, 3, 2 ** 33 + 1)
    assert tuple(msg.shape) == shape and msg.crc32 == 0xDEADBEEF
    assert (msg.stamp.sec, msg.stamp.nanosec) == (5, 6)
    assert np.array_equal(np.frombuffer(msg.payload.data, np.float32), values)
    # ... and rclpy's bytes are what we decode.
    got, payload = decode_chunk(serialize_message(msg))
    assert got == header and np.array_equal(payload, values)


def test_a_layout_with_dimensions_is_skipped():
    msg = tensor_to_msgs(np.ones(4, np.float32), model='m', stream='s', source='x',
                         batch_seq=1, kind=0, chunk_elements=4)[0]
    msg.payload.layout.dim = [MultiArrayDimension(label='rows', size=4, stride=4)]
    header, payload = decode_chunk(serialize_message(msg))
    assert header.model == 'm' and np.array_equal(payload, np.ones(4, np.float32))


@pytest.mark.parametrize('damage', [lambda b: b[:20], lambda b: b'\x01\x00' + b[2:],
                                    lambda b: b[:-4], lambda b: b''])
def test_damaged_bytes_are_cdr_errors(damage):
    data = encode_chunk(ChunkHeader(0, 0, 'm', 's', 'x', 0, 0, 0, 1, 0, (4,), 0),
                        np.ones(4, np.float32))
    with pytest.raises(CdrError):
        decode_chunk(damage(data))


class _Log:

    def warning(self, _text):
        pass

    error = warning


def test_receiver_takes_bytes_and_messages_alike():
    tensor = np.random.default_rng(0).standard_normal((5, 7)).astype(np.float32)
    options = {'model': 'm', 'stream': 's', 'source': '/x', 'batch_seq': 3, 'kind': 5,
               'chunk_elements': 8}
    from_bytes, from_msgs = TensorReceiver(_Log()), TensorReceiver(_Log())
    raw = [from_bytes.on_message(b) for b in iter_serialized_chunks(tensor, **options)]
    msgs = [from_msgs.on_message(m) for m in tensor_to_msgs(tensor, **options)]
    assert raw[:-1] == [None] * (len(raw) - 1)
    assert np.array_equal(raw[-1].array, tensor) and np.array_equal(msgs[-1].array, tensor)
    assert (raw[-1].source, raw[-1].batch_seq, raw[-1].kind) == ('/x', 3, 5)
    bad = list(iter_serialized_chunks(tensor, **options))
    assert from_bytes.on_message(bad[0][:30]) is None and from_bytes.rejected_tensors == 1
