"""A checkpoint file read in pieces, each tied to the very file it came from."""
from __future__ import annotations

import os

from dff_lifecycle.core.run.file_pieces import Assembly, FileChanged, read_piece
from dff_lifecycle.core.run.weights import save_bytes_atomic
import pytest


def test_pieces_reassemble_the_file_exactly(tmp_path):
    path = tmp_path / 'layer_1.pt'
    data = os.urandom(10_000)
    save_bytes_atomic(path, data)
    first = read_piece(path, 0, 4096)
    assert (first.offset, len(first.data), first.total_bytes) == (0, 4096, 10_000)
    assembly = Assembly(first)
    while not assembly.complete:
        assembly.add(read_piece(path, assembly.received, 4096, assembly.etag))
    assert assembly.bytes() == data


def test_a_piece_of_a_replaced_checkpoint_is_refused(tmp_path):
    path = tmp_path / 'layer_1.pt'
    save_bytes_atomic(path, b'a' * 100)
    first = read_piece(path, 0, 10)
    save_bytes_atomic(path, b'b' * 100)        # the next checkpoint, same size
    with pytest.raises(FileChanged):
        read_piece(path, 10, 10, first.etag)


def test_pieces_out_of_order_or_of_another_file_do_not_join(tmp_path):
    path = tmp_path / 'x'
    save_bytes_atomic(path, b'x' * 30)
    assembly = Assembly(read_piece(path, 0, 10))
    with pytest.raises(ValueError, match='does not continue'):
        assembly.add(read_piece(path, 20, 10))
    with pytest.raises(ValueError, match='received'):
        assembly.bytes()


def test_whole_file_when_no_limit_and_an_empty_file(tmp_path):
    path = tmp_path / 'x'
    save_bytes_atomic(path, b'abc')
    piece = read_piece(path)
    assert piece.data == b'abc' and piece.last
    save_bytes_atomic(path, b'')
    empty = Assembly(read_piece(path, 0, 10))
    assert empty.complete and empty.bytes() == b''
