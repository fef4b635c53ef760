"""
Property-based fuzzing (hypothesis): chunk streams and configs, as an attacker would send them.

Chunk streams: real serialized chunks of real tensors, then dropped, duplicated, reordered,
truncated, bit-flipped, or mixed with floods of tensor ids. The receiver never raises, never
returns a tensor that was not sent, and keeps memory bounded. Configs: random YAML-ish data
gives a ConfigError (one clear line) or a valid config, never another exception.
Each test prints how many cases it tried (`pytest -s`).
"""
from __future__ import annotations

from pathlib import Path

from dff_lifecycle.core.config import ConfigError, load_layer_config, load_model_config
from dff_lifecycle.wire.endpoints import TensorReceiver
from dff_lifecycle.wire.messages import iter_serialized_chunks
from hypothesis import example, given, HealthCheck, settings, strategies as st
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
LAYERS = load_layer_config(REPO / 'params' / 'layers.yaml')
CASES = 300
tried: dict[str, int] = {}


class Quiet:

    def warning(self, _text: str) -> None: ...

    def error(self, _text: str) -> None: ...


def chunks_of(seed: int, rows: int, cols: int, seq: int,
              chunk: int) -> tuple[np.ndarray, list[bytes]]:
    array = np.random.default_rng(seed).standard_normal((rows, cols), dtype=np.float32)
    return array, list(iter_serialized_chunks(
        array, model='m', stream='s', source='/m/layer_0', batch_seq=seq, kind=1,
        chunk_elements=chunk))


def mutate(data: bytes, how: st.DataObject) -> bytes:
    choice = how.draw(st.sampled_from(['keep', 'truncate', 'flip', 'extend']))
    if choice == 'truncate' and data:
        return data[:how.draw(st.integers(0, len(data) - 1))]
    if choice == 'flip' and data:
        at = how.draw(st.integers(0, len(data) - 1))
        return data[:at] + bytes([data[at] ^ how.draw(st.integers(1, 255))]) + data[at + 1:]
    if choice == 'extend':
        return data + how.draw(st.binary(max_size=64))
    return data


@settings(max_examples=CASES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_chunk_streams_never_crash_and_never_invent_a_tensor(data):
    tried['chunks'] = tried.get('chunks', 0) + 1
    receiver = TensorReceiver(Quiet(), max_pending=4, max_pending_bytes=1 << 20)
    sent = {}
    stream: list[bytes] = []
    for seq in range(data.draw(st.integers(1, 3))):
        array, chunks = chunks_of(seq, data.draw(st.integers(1, 8)), data.draw(st.integers(1, 9)),
                                  seq, data.draw(st.integers(1, 20)))
        sent[seq] = array
        stream += chunks
    operations = data.draw(st.lists(st.sampled_from(['drop', 'duplicate', 'swap', 'mutate',
                                                     'junk']), max_size=12))
    for op in operations:
        if not stream:
            break
        i = data.draw(st.integers(0, len(stream) - 1))
        if op == 'drop':
            del stream[i]
        elif op == 'duplicate':
            stream.insert(i, stream[i])
        elif op == 'swap':
            j = data.draw(st.integers(0, len(stream) - 1))
            stream[i], stream[j] = stream[j], stream[i]
        elif op == 'mutate':
            stream[i] = mutate(stream[i], data)
        else:
            stream.insert(i, data.draw(st.binary(max_size=200)))
    for message in stream:
        tensor = receiver.on_message(message)  # never raises
        if tensor is not None:  # only what was sent, bit for bit (the CRC guards it)
            assert tensor.batch_seq in sent
            assert np.array_equal(tensor.array, sent[tensor.batch_seq])


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 10**6), st.integers(1, 64))
def test_a_flood_of_tensor_ids_keeps_memory_bounded(first_seq, cols):
    tried['flood'] = tried.get('flood', 0) + 1
    receiver = TensorReceiver(Quiet(), max_pending=4, max_pending_bytes=1 << 20)
    for seq in range(first_seq, first_seq + 50):  # 50 tensors, each only its first chunk
        _, chunks = chunks_of(0, 4, cols, seq, 1)  # one chunk per row: never complete
        assert receiver.on_message(chunks[0]) is None
    reassembler = receiver._reassembler
    assert len(reassembler._pending) <= 4


YAMLISH = st.recursive(st.none() | st.booleans() | st.integers(-5, 3000) |
                       st.floats(allow_nan=True) | st.text(max_size=12),
                       lambda inner: st.lists(inner, max_size=4) |
                       st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)
KEYS = ['name', 'dataset', 'supervised', 'layers', 'training', 'layer_defaults',
        'goodness_layers', 'feature_layers', 'head', 'input_shape', 'num_classes', 'junk']


@settings(max_examples=CASES, deadline=None)
@example({'dataset': {'\n': None}}, [])  # a control character in a key: still one line
@given(st.dictionaries(st.sampled_from(KEYS), YAMLISH, max_size=8),
       st.lists(st.tuples(st.integers(-3, 4), st.sampled_from(['FFDense', 'Conv', '../x']),
                          st.lists(st.integers(-2, 600), max_size=2)), max_size=4))
def test_any_model_config_is_valid_or_one_config_error(data, rows):
    tried['configs'] = tried.get('configs', 0) + 1
    config = {'name': 'fuzz', 'dataset': 'mnist', 'supervised': True,
              'layers': [[f, m, a] for f, m, a in rows], **data}
    try:
        model = load_model_config(config, LAYERS)
    except ConfigError as err:
        assert '\n' not in str(err) and str(err)
        return
    assert model.layers and all(r.source_index < r.index for r in model.layers)


@pytest.fixture(scope='module', autouse=True)
def report():
    yield
    print('\nfuzzing: ' + ', '.join(f'{name} {count} cases' for name, count in tried.items()))
