"""dff_lifecycle.wire.chunks: split, reassemble and every rejection path."""
import zlib

from dff_lifecycle.wire.chunks import ChunkError, crc32_of, Reassembler, split_tensor
from dff_lifecycle.wire.header import ChunkHeader, TensorKey
from fake_clock import FakeClock
import numpy as np
import pytest

KEY = TensorKey('m', 'train', 7, 0)


def tensor(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)


def chunks_of(array: np.ndarray, chunk_elements: int, key: TensorKey = KEY):
    """(meta, payload) pairs as a sender would produce them."""
    views = split_tensor(array, chunk_elements)
    crc = crc32_of(array, key, array.shape)
    return [(ChunkHeader.of(key, v.index, len(views), v.offset, array.shape, crc), v.data)
            for v in views]


def feed(reassembler: Reassembler, pairs):
    """Add all pairs; return the results of every add."""
    return [reassembler.add(meta, payload) for meta, payload in pairs]


# ---------------------------------------------------------------- split / crc

@pytest.mark.parametrize('shape', [(1,), (7,), (4, 5), (3, 2, 5), (2, 1, 3, 4), ()])
@pytest.mark.parametrize('chunk_elements', [1, 3, 4, 5, 20, 1000])
def test_split_then_reassemble_round_trip(shape, chunk_elements):
    array = tensor(shape)
    pairs = chunks_of(array, chunk_elements)
    assert len(pairs) == -(-max(array.size, 1) // chunk_elements)
    results = feed(Reassembler(), pairs)
    assert all(r is None for r in results[:-1])
    assert results[-1].shape == array.shape
    assert np.array_equal(results[-1], array)
    assert results[-1].tobytes() == array.tobytes()  # bit identical


def test_split_exact_multiple_has_full_chunks_only():
    views = split_tensor(tensor(12), 4)
    assert [(v.index, v.offset, v.count) for v in views] == [(0, 0, 4), (1, 4, 4), (2, 8, 4)]


def test_split_returns_views_without_copies():
    array = tensor((6, 5))
    for view in split_tensor(array, 7):
        assert np.shares_memory(view.data, array)


def test_split_empty_tensor_gives_one_empty_chunk_that_reassembles():
    array = np.zeros((0, 3), np.float32)
    pairs = chunks_of(array, 4)
    assert len(pairs) == 1 and pairs[0][1].size == 0
    assert Reassembler().add(*pairs[0]).shape == (0, 3)


def test_split_rejects_bad_arguments():
    with pytest.raises(ValueError, match='float32'):
        split_tensor(np.zeros(3), 2)
    with pytest.raises(ValueError, match='chunk_elements'):
        split_tensor(tensor(3), 0)


def test_crc32_is_zlib_crc_of_little_endian_bytes_and_handles_strides():
    array = tensor((4, 6))
    assert crc32_of(array) == zlib.crc32(array.astype('<f4').tobytes())
    assert crc32_of(array.T) == zlib.crc32(np.ascontiguousarray(array.T).tobytes())


def test_the_fast_crc_is_installed_and_is_zlibs_checksum():
    from dff_lifecycle.wire import chunks
    assert chunks.crc32.__module__.startswith('isal')  # requirements.txt: 30x zlib here
    data = np.random.default_rng(0).random(100_003, dtype=np.float32).tobytes()
    for cut in (0, 1, 4095, len(data)):
        assert chunks.crc32(data[cut:], chunks.crc32(data[:cut])) == zlib.crc32(data)


# ---------------------------------------------------------------- ordering

def test_out_of_order_chunks_reassemble():
    array = tensor((5, 9))
    pairs = chunks_of(array, 4)
    order = np.random.default_rng(1).permutation(len(pairs))
    results = feed(Reassembler(), [pairs[i] for i in order])
    assert np.array_equal(results[-1], array)


def test_interleaved_tensors_are_kept_apart():
    a, b = tensor(10, seed=1), tensor(10, seed=2)
    pa = chunks_of(a, 3, TensorKey('m', 'train', 1, 0))
    pb = chunks_of(b, 3, TensorKey('m', 'train', 1, 1))  # same batch, other kind
    reassembler = Reassembler()
    results = feed(reassembler, [p for pair in zip(pa, pb) for p in pair])
    assert np.array_equal(results[-2], a) and np.array_equal(results[-1], b)
    assert reassembler.pending_count == 0


# ---------------------------------------------------------------- rejections

def test_duplicate_chunk_rejects_tensor_and_ignores_its_remaining_chunks():
    pairs = chunks_of(tensor(10), 3)
    reassembler = Reassembler()
    reassembler.add(*pairs[0])
    with pytest.raises(ChunkError, match='duplicate chunk 0') as error:
        reassembler.add(*pairs[0])
    assert error.value.key == KEY
    assert feed(reassembler, pairs[1:]) == [None] * 3
    assert reassembler.ignored_chunks == 3 and reassembler.pending_count == 0


def test_missing_chunk_never_completes_and_expires():
    clock = FakeClock()
    discarded = []
    reassembler = Reassembler(clock=clock, on_discard=lambda key, why: discarded.append(key))
    pairs = chunks_of(tensor(10), 3)
    assert feed(reassembler, pairs[:2] + pairs[3:]) == [None] * 3
    clock.now += 5.0
    assert reassembler.expire(older_than_s=10.0) == []
    clock.now += 6.0
    assert reassembler.expire(older_than_s=10.0) == [KEY]
    assert discarded == [KEY] and reassembler.pending_count == 0


def test_wrong_chunk_count_in_later_chunk_is_rejected():
    (meta0, p0), (meta1, p1) = chunks_of(tensor(6), 3)
    reassembler = Reassembler()
    reassembler.add(meta0, p0)
    with pytest.raises(ChunkError, match='chunk_count changed'):
        reassembler.add(ChunkHeader.of(KEY, 1, 3, meta1.offset, meta1.shape, meta1.crc32), p1)


def test_chunk_count_larger_than_sent_never_completes():
    array = tensor(6)
    crc = crc32_of(array, KEY)
    reassembler = Reassembler()
    assert reassembler.add(ChunkHeader.of(KEY, 0, 3, 0, (6,), crc), array[:3]) is None
    assert reassembler.add(ChunkHeader.of(KEY, 1, 3, 3, (6,), crc), array[3:]) is None
    assert reassembler.pending_count == 1


@pytest.mark.parametrize('count', [0, 7])
def test_impossible_chunk_count_is_rejected(count):
    with pytest.raises(ChunkError, match='chunk'):
        Reassembler().add(ChunkHeader.of(KEY, 0, count, 0, (6,), 0), tensor(1))


def test_chunk_index_out_of_range_is_rejected():
    with pytest.raises(ChunkError, match='chunk_index 2 outside 0..1'):
        Reassembler().add(ChunkHeader.of(KEY, 2, 2, 0, (6,), 0), tensor(3))


def test_shape_product_smaller_than_data_is_rejected():
    (meta0, p0), (meta1, p1) = chunks_of(tensor(8), 4)
    reassembler = Reassembler()
    small = (7,)
    reassembler.add(ChunkHeader.of(KEY, 0, 2, 0, small, meta0.crc32), p0)
    with pytest.raises(ChunkError, match=r'spans \[4, 8\) outside the 7 elements'):
        reassembler.add(ChunkHeader.of(KEY, 1, 2, 4, small, meta1.crc32), p1)


def test_shape_product_larger_than_data_is_rejected_on_completion():
    pairs = [(ChunkHeader.of(m.key, m.chunk_index, m.chunk_count, m.offset, (9,), m.crc32), p)
             for m, p in chunks_of(tensor(8), 4)]
    reassembler = Reassembler()
    reassembler.add(*pairs[0])
    with pytest.raises(ChunkError, match='cover 8 of 9'):
        reassembler.add(*pairs[1])


def test_shape_change_between_chunks_is_rejected():
    (meta0, p0), (meta1, p1) = chunks_of(tensor((2, 4)), 4)
    reassembler = Reassembler()
    reassembler.add(meta0, p0)
    with pytest.raises(ChunkError, match='shape changed'):
        reassembler.add(ChunkHeader.of(KEY, 1, 2, 4, (4, 2), meta1.crc32), p1)


@pytest.mark.parametrize('offset', [5, 7, 1 << 40])
def test_bad_offset_is_rejected(offset):
    (meta0, p0), (meta1, p1) = chunks_of(tensor(8), 4)
    reassembler = Reassembler()
    reassembler.add(meta0, p0)
    with pytest.raises(ChunkError, match='outside'):
        reassembler.add(ChunkHeader.of(KEY, 1, 2, offset, meta1.shape, meta1.crc32), p1)


def test_overlapping_chunks_are_rejected_even_when_counts_add_up():
    array = tensor(8)
    crc = crc32_of(array, KEY)
    reassembler = Reassembler()
    reassembler.add(ChunkHeader.of(KEY, 0, 3, 0, (8,), crc), array[0:4])
    reassembler.add(ChunkHeader.of(KEY, 1, 3, 2, (8,), crc), array[2:4])
    with pytest.raises(ChunkError, match='do not tile'):
        reassembler.add(ChunkHeader.of(KEY, 2, 3, 4, (8,), crc), array[4:6])


def test_crc_mismatch_is_rejected_and_state_discarded():
    pairs = chunks_of(tensor(10), 4)
    damaged = pairs[1][1].copy()
    damaged[0] += 1.0
    reassembler = Reassembler()
    with pytest.raises(ChunkError, match='CRC-32 mismatch'):
        feed(reassembler, [pairs[0], (pairs[1][0], damaged), pairs[2]])
    assert reassembler.pending_count == 0


def test_wrong_payload_dtype_is_rejected():
    meta, payload = chunks_of(tensor(4), 4)[0]
    with pytest.raises(ChunkError, match='float32'):
        Reassembler().add(meta, payload.astype(np.float64))


def test_rejected_key_is_accepted_again_after_expiry():
    clock = FakeClock()
    reassembler = Reassembler(clock=clock)
    pairs = chunks_of(tensor(6), 3)
    reassembler.add(*pairs[0])
    with pytest.raises(ChunkError):
        reassembler.add(*pairs[0])
    clock.now += 61.0
    reassembler.expire(older_than_s=60.0)
    assert np.array_equal(feed(reassembler, pairs)[-1], tensor(6))


# ---------------------------------------------------------------- bounds

def test_pending_tensors_are_bounded_and_oldest_is_evicted():
    discarded = []
    reassembler = Reassembler(max_pending=3,
                              on_discard=lambda key, why: discarded.append((key, why)))
    firsts = [chunks_of(tensor(8), 4, TensorKey('m', 'train', seq, 0))[0] for seq in range(5)]
    feed(reassembler, firsts)
    assert reassembler.pending_count == 3
    assert [key.batch_seq for key, _ in discarded] == [0, 1]
    assert all('evicted' in why for _, why in discarded)


def test_pending_bytes_are_bounded():
    reassembler = Reassembler(max_pending=100, max_pending_bytes=100)  # room for 25 floats
    for seq in range(4):
        reassembler.add(*chunks_of(tensor(10), 5, TensorKey('m', 'train', seq, 0))[0])
    assert reassembler.pending_count == 2 and reassembler.pending_bytes == 80


def test_tensor_larger_than_the_byte_bound_is_rejected_before_allocating():
    with pytest.raises(ChunkError, match='max_pending_bytes'):
        Reassembler(max_pending_bytes=1 << 20).add(
            ChunkHeader.of(KEY, 0, 1, 0, (1 << 30,), 0), tensor(4))


def test_reassembly_fills_the_buffer_allocated_at_the_first_chunk():
    pairs = chunks_of(tensor(12), 5)
    reassembler = Reassembler()
    reassembler.add(*pairs[0])
    buffer = next(iter(reassembler._pending.values())).buffer
    out = feed(reassembler, pairs[1:])[-1]
    assert np.shares_memory(out, buffer)  # no final concatenation copy
    assert not any(np.shares_memory(out, payload) for _, payload in pairs)


@pytest.mark.parametrize('field', ['batch_seq', 'kind', 'stream', 'shape'])
def test_a_corrupted_header_cannot_pass_a_payload_off_as_another_tensor(field):
    # Found by the fuzz test: the CRC covered the payload only, so a flipped batch_seq
    # delivered batch 1's values as batch 0. It covers the tensor's identity too now.
    array = tensor((2, 3))
    (meta, payload), = chunks_of(array, 6)
    key = meta.key._replace(**{'batch_seq': 8} if field == 'batch_seq' else
                            {'kind': 2} if field == 'kind' else {'stream': 't'}
                            if field == 'stream' else {})
    shape = (3, 2) if field == 'shape' else meta.shape
    forged = ChunkHeader.of(key, 0, 1, 0, shape, meta.crc32)
    with pytest.raises(ChunkError, match='CRC-32 mismatch'):
        Reassembler().add(forged, payload)
