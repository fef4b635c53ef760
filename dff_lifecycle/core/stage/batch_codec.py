"""
One tensor per batch on the wire, and the first layer's input built where it is used.

Training batches travel as one tensor: a layer's positives and negatives stacked
(`TRAIN_PAIR`), or, into the first layer of a supervised model, each image once
with its true and its wrong label (`TRAIN_LABELLED`): the layer overlays both
itself. Inference into that layer sends each image once (`INFER_IMAGES`) and the
layer expands the label candidates: ten times less traffic than the overlays.
A class_groups model sends every layer its input with the label as a last column
(`TRAIN_CLASSED`), and infers on plain inputs (`INFERENCE`).
Pure torch; the kinds are the `dff_msgs/TensorChunk` constants.
"""
from __future__ import annotations

from enum import IntEnum

from dff_lifecycle.core.ff.negatives import candidate_inputs, overlay_labels
import torch
from torch import Tensor


class Kind(IntEnum):
    """What a tensor on the wire holds (values of dff_msgs/msg/TensorChunk KIND_*)."""

    POSITIVE = 0        # positive half of a training batch
    NEGATIVE = 1        # negative half
    INFERENCE = 2       # inference input or activities
    GOODNESS = 3        # per-sample goodness for the master
    FEATURES = 4        # normalised activities for the master
    TRAIN_PAIR = 5      # (2N, ...): positives then negatives
    TRAIN_LABELLED = 6  # (N, D + 2): images, true label, wrong label (first layer overlays)
    INFER_IMAGES = 7    # (N, D): images; the first layer expands every label candidate
    TRAIN_CLASSED = 8   # (N, D + 1): inputs or activities, then the label (class_groups)
    BUNDLE = 9          # several training batches of one kind (core.stage.bundles)
    PARTIALS = 10       # (B, K): a shard's sums of squares for its peers (core.stage.shard_stage)
    REPLICA_WEIGHTS = 11  # (P,): a replica's weights for its peers (core.stage.replica_stage)


TRAINING_KINDS = (Kind.POSITIVE, Kind.NEGATIVE, Kind.TRAIN_PAIR, Kind.TRAIN_LABELLED,
                  Kind.TRAIN_CLASSED)
INFERENCE_KINDS = (Kind.INFERENCE, Kind.INFER_IMAGES)
LABEL_COLUMNS = 2


class CodecError(ValueError):
    """A tensor that does not have the layout its kind promises."""


def pack_pair(x_pos: Tensor, x_neg: Tensor) -> Tensor:
    if x_pos.shape != x_neg.shape:
        raise CodecError(f'positives {tuple(x_pos.shape)} and negatives {tuple(x_neg.shape)} '
                         'differ in shape')
    return torch.cat([x_pos, x_neg])


def unpack_pair(pair: Tensor) -> tuple[Tensor, Tensor]:
    if pair.dim() < 2 or pair.shape[0] % 2:
        raise CodecError(f'a training pair needs an even number of rows, got {tuple(pair.shape)}')
    half = pair.shape[0] // 2
    return pair[:half], pair[half:]


def pack_labelled(x: Tensor, y_pos: Tensor, y_neg: Tensor) -> Tensor:
    """(N, D + 2) float32: the flattened images, then both labels (exact in float32)."""
    flat = x.flatten(1).float()
    n = flat.shape[0]
    if y_pos.shape != (n,) or y_neg.shape != (n,):
        raise CodecError(f'labels must be ({n},), got {tuple(y_pos.shape)} and '
                         f'{tuple(y_neg.shape)}')
    labels = torch.stack([y_pos, y_neg], dim=1).to(flat.dtype)
    return torch.cat([flat, labels], dim=1)


def unpack_labelled(packed: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """Return (positives, negatives): the images overlaid with each label, as make_pair does."""
    if packed.dim() != 2 or packed.shape[1] <= LABEL_COLUMNS:
        raise CodecError(f'a labelled batch is (N, D + 2), got {tuple(packed.shape)}')
    x = packed[:, :-LABEL_COLUMNS]
    labels = packed[:, -LABEL_COLUMNS:]
    if labels.numel() and not bool(torch.all(labels == labels.round())):
        raise CodecError('labels of a labelled batch must be whole numbers')
    labels = labels.long()
    try:
        return (overlay_labels(x, labels[:, 0], num_classes),
                overlay_labels(x, labels[:, 1], num_classes))
    except ValueError as err:
        raise CodecError(str(err)) from err


def expand_candidates(x: Tensor, num_classes: int) -> Tensor:
    """(N*C, D): every image with every label, sample-major (as inference_inputs does)."""
    try:
        return candidate_inputs(x.flatten(1), num_classes)
    except ValueError as err:
        raise CodecError(str(err)) from err


def pack_classed(x: Tensor, y: Tensor) -> Tensor:
    """(N, D + 1) float32: the flattened inputs, then the label (exact in float32)."""
    flat = x.flatten(1).float()
    if y.shape != (flat.shape[0],):
        raise CodecError(f'labels must be ({flat.shape[0]},), got {tuple(y.shape)}')
    return torch.cat([flat, y.to(flat.dtype).unsqueeze(1)], dim=1)


def unpack_classed(packed: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """Return (inputs (N, D), labels (N,) as int64) of a TRAIN_CLASSED tensor."""
    if packed.dim() != 2 or packed.shape[1] < 2:
        raise CodecError(f'a classed batch is (N, D + 1), got {tuple(packed.shape)}')
    labels = packed[:, -1]
    if labels.numel() and not bool(torch.all((labels == labels.round()) & (labels >= 0)
                                             & (labels < num_classes))):
        raise CodecError(f'labels of a classed batch must be whole numbers in 0..'
                         f'{num_classes - 1}')
    return packed[:, :-1], labels.long()
