"""
A file read in pieces, each tied to the very file it came from (no ROS, no torch).

The master copies every layer's newest checkpoint over ROS. A wide layer's file is
tens or hundreds of MB; sent as one service response it held a 0.12-core device's
executor and transport for about 5 s, long enough for its DDS liveliness to lapse.
Sent in pieces of a few MB, the device serves other calls and asserts its
liveliness between them. Checkpoints are replaced atomically (a new inode) while
pieces travel, so each piece names its file by an etag (inode, mtime, size); a
piece asked of a file that has since been replaced is refused (`FileChanged`),
and the caller drops what it had: the next pull brings the newer checkpoint.
"""
from __future__ import annotations

from dataclasses import dataclass
import os
from pathlib import Path

PIECE_BYTES = 4 * 2**20   # small enough that a slow device sends one in well under a lease


class FileChanged(Exception):
    """The file was replaced since the piece's etag was taken."""


@dataclass(frozen=True)
class Piece:
    data: bytes
    offset: int
    total_bytes: int
    etag: str

    @property
    def last(self) -> bool:
        return self.offset + len(self.data) >= self.total_bytes


def etag_of(stat: os.stat_result) -> str:
    return f'{stat.st_ino}:{stat.st_mtime_ns}:{stat.st_size}'


def read_piece(path: Path, offset: int = 0, max_bytes: int = 0, etag: str = '') -> Piece:
    """Read `max_bytes` (0: all) of `path` from `offset`; FileChanged if `etag` differs."""
    with open(path, 'rb') as f:  # one open file: a replacement during the read is not seen
        stat = os.fstat(f.fileno())
        current = etag_of(stat)
        if etag and etag != current:
            raise FileChanged(f'{path} was replaced')
        if offset > stat.st_size:
            raise ValueError(f'offset {offset} past the end of {path} ({stat.st_size} bytes)')
        f.seek(offset)
        data = f.read(max_bytes if max_bytes > 0 else -1)
    return Piece(data, offset, stat.st_size, current)


class Assembly:
    """The pieces of one file, in order; `bytes()` once complete."""

    def __init__(self, first: Piece) -> None:
        if first.offset != 0:
            raise ValueError('the first piece must start at offset 0')
        self.etag = first.etag
        self.total_bytes = first.total_bytes
        self._parts = [first.data]
        self.received = len(first.data)

    @property
    def complete(self) -> bool:
        return self.received >= self.total_bytes

    def add(self, piece: Piece) -> None:
        if piece.etag != self.etag or piece.offset != self.received:
            raise ValueError(f'piece at {piece.offset} of {piece.etag} does not continue '
                             f'{self.received} of {self.etag}')
        if not piece.data and not self.complete:
            raise ValueError('an empty piece before the end')
        self._parts.append(piece.data)
        self.received += len(piece.data)

    def bytes(self) -> bytes:  # noqa: A003 - the assembled file's bytes
        if not self.complete:
            raise ValueError(f'{self.received} of {self.total_bytes} bytes received')
        return b''.join(self._parts)
