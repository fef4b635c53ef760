"""
Several training batches in one wire tensor: per-message costs paid once per bundle.

A bundle is one 2-D float32 tensor (rows, F): a header of
`2 + 2k` numbers padded to whole rows of F, then the k batches' rows, each
batch flattened to (rows_i, F). The header holds k, the batches' kind (all the
same), each batch's distance back from the bundle's own seq (the wire
header's batch_seq: the last batch), and each batch's row count. Numbers are
whole and below 2**24, so float32 holds them exactly. The receiving stage
trains the batches one by one, exactly as if they had come alone, and bundles
what it sends on the same way. Pure torch; the kind is `Kind.BUNDLE`.
"""
from __future__ import annotations

import math
from typing import Sequence

from dff_lifecycle.core.stage.batch_codec import CodecError, Kind
import torch
from torch import Tensor

#: What a bundle may carry: training batches, in the layouts the stages already take.
BUNDLED_KINDS = (Kind.TRAIN_PAIR, Kind.TRAIN_LABELLED, Kind.TRAIN_CLASSED)
EXACT_LIMIT = 2 ** 24  # float32 holds every whole number below this


def header_rows(count: int, features: int) -> int:
    """Rows the header of a `count`-batch bundle takes at `features` columns."""
    return math.ceil((2 + 2 * count) / features)


def pack_bundle(kind: int, parts: Sequence[tuple[int, Tensor]], seq: int) -> Tensor:
    """
    Return the bundle of `parts`, [(batch seq, tensor)], sent under batch_seq `seq`.

    Every tensor flattens to the same number of columns; every seq is <= `seq`.
    """
    if not parts:
        raise CodecError('a bundle needs at least one batch')
    kind = _bundled_kind(kind)
    flat = [tensor.reshape(tensor.shape[0], -1).float() for _, tensor in parts]
    features = flat[0].shape[1]
    if features < 1 or any(t.shape[1] != features for t in flat):
        raise CodecError('the batches of a bundle must have the same number of columns, got '
                         f'{sorted({t.shape[1] for t in flat})}')
    offsets = [seq - part_seq for part_seq, _ in parts]
    rows = [t.shape[0] for t in flat]
    if any(not 0 <= off < EXACT_LIMIT for off in offsets) or len(set(offsets)) != len(offsets):
        raise CodecError(f'bundle seqs must be distinct and <= {seq} (within 2**24)')
    if any(not 0 <= r < EXACT_LIMIT for r in rows):
        raise CodecError('a batch of a bundle has too many rows')
    values = torch.tensor([len(parts), int(kind), *offsets, *rows], dtype=torch.float32)
    header = torch.zeros(header_rows(len(parts), features) * features)
    header[:values.numel()] = values
    return torch.cat([header.view(-1, features), *flat])


def unpack_bundle(bundle: Tensor, seq: int) -> tuple[Kind, list[tuple[int, Tensor]]]:
    """Return (kind, [(batch seq, (rows_i, F) tensor)]) of a bundle sent under `seq`."""
    if bundle.dim() != 2 or bundle.shape[0] < 1 or bundle.shape[1] < 1:
        raise CodecError(f'a bundle is (rows, F), got {tuple(bundle.shape)}')
    features = bundle.shape[1]
    count = float(bundle[0, 0])
    if count != round(count) or not 1 <= count < EXACT_LIMIT:
        raise CodecError(f'a bundle must start with its batch count, got {count}')
    count = int(count)
    head = header_rows(count, features)
    if head > bundle.shape[0]:
        raise CodecError(f'a bundle of {count} batches needs {head} header rows, has '
                         f'{bundle.shape[0]} rows')
    values = bundle[:head].reshape(-1)[:2 + 2 * count]
    if not bool(torch.all(values == values.round())) or bool((values < 0).any()):
        raise CodecError('a bundle header holds whole numbers >= 0 only')
    numbers = values.to(torch.int64)  # a few header numbers, read as a tensor
    kind = _bundled_kind(int(numbers[1]))
    offsets, rows = numbers[2:2 + count], numbers[2 + count:]
    if int(torch.unique(offsets).numel()) != count or bool((offsets > seq).any()):
        raise CodecError(f'bundle seqs must be distinct and <= {seq}')
    announced = int(rows.sum())
    if announced != bundle.shape[0] - head:
        raise CodecError(f'a bundle announces {announced} rows of batches, carries '
                         f'{bundle.shape[0] - head}')
    ends = head + torch.cumsum(rows, 0)
    parts = [(seq - int(offsets[i]), bundle[int(ends[i] - rows[i]):int(ends[i])])
             for i in range(count)]
    return kind, parts


def _bundled_kind(kind: int) -> Kind:
    try:
        kind = Kind(int(kind))
    except ValueError:
        raise CodecError(f'unknown tensor kind {kind} in a bundle') from None
    if kind not in BUNDLED_KINDS:
        raise CodecError(f'a bundle carries training batches '
                         f'({", ".join(k.name for k in BUNDLED_KINDS)}), not {kind.name}')
    return kind
