"""
A layer wider than any one device: its output units (channels) split into shards.

FF's loss needs nothing of a layer's activities but each sample's goodness: a sum of
squared activities over the units (per class group under class_groups, per position
under goodness_scope position). So a dense or conv layer split by output units trains
exactly as the whole layer when its shards exchange their partial sums: one number per
sample (`groups` numbers under class_groups), never activities. Each shard normalises
the same input, computes its units' activities and their partial sums of squares
(`forward`); once the partial sums of all shards are added up, each shard computes the
whole layer's loss from them, back-propagates into its own rows of the weights only, and
steps its own optimizer (`finish`). The next layer reads the shards' activities
concatenated in unit (channel) order, which is also the order after a pool or a Flatten.

Per-element optimizers (SGD, Adam, AdamW) make the shards' updates the whole layer's,
row for row; the unit tests check goodness, loss and weights after several steps.
"""
from __future__ import annotations

from typing import Optional, Sequence

from dff_lifecycle.core.ff.layers import build_row, FFDense, reset_linear_rows_
from dff_lifecycle.core.ff.local_trainer import LocalTrainer, silent_indices, StepResult
from dff_lifecycle.core.hyperparams import FFHyperParams
from dff_lifecycle.core.objectives.class_groups import (class_group_loss, silent_group_mask,
                                                        true_and_other_goodness)
from dff_lifecycle.core.objectives.pos_neg import ff_loss
import torch
from torch import nn, Tensor

#: Layer types that can be split by output units (the first arg is their width).
SPLITTABLE = ('FFDense', 'FFConv2d')
#: Input normalisations with learned parameters would diverge between the shards.
UNSPLITTABLE_NORMS = ('batch',)


def shard_ranges(units: int, shards: int) -> list[tuple[int, int]]:
    """Contiguous [start, stop) unit ranges of near-equal size, in order."""
    if not 1 <= shards <= units:
        raise ValueError(f'cannot split {units} units into {shards} shards (1 .. {units})')
    bounds = [round(i * units / shards) for i in range(shards + 1)]
    return list(zip(bounds, bounds[1:]))


def build_shard(layer_type: str, in_shape: Sequence[int], args: Sequence[int],
                unit_range: tuple[int, int], seed: int) -> nn.Module:
    """
    Build one shard's layer: the row's `args` with the width of `unit_range`.

    It holds its rows of the whole layer's seeded initialisation, drawn block by block and
    never held whole: split or not, a layer starts from the same weights.
    """
    if layer_type not in SPLITTABLE:
        raise ValueError(f'{layer_type} cannot be split by output units (only '
                         f'{", ".join(SPLITTABLE)})')
    start, stop = unit_range
    layer, _ = build_row(layer_type, [tuple(in_shape)], [stop - start, *args[1:]], seed)
    reset_linear_rows_(layer.weight, layer.bias, torch.Generator().manual_seed(seed),
                       unit_range, int(args[0]))
    return layer


def split_dense(layer: FFDense, ranges: Sequence[tuple[int, int]]) -> list[FFDense]:
    """Shards of `layer` holding copies of its rows (weights, biases) for each unit range."""
    shards = []
    for start, stop in ranges:
        shard = FFDense(layer.in_features, stop - start, bias=layer.bias is not None)
        shard.set_input_norm(layer.input_norm)
        with torch.no_grad():
            shard.weight.copy_(layer.weight[start:stop])
            if layer.bias is not None:
                shard.bias.copy_(layer.bias[start:stop])
        shards.append(shard)
    return shards


class ShardTrainer(LocalTrainer):
    """
    Trains one shard (units [start, stop) of a `units`-wide layer) in two phases.

    pos_neg: `forward(x_pos, x_neg)` -> partial sums (2B, K); class_groups: `forward(x)`
    -> (B, groups). Then `finish(total[, y])` with the partial sums of every shard added.
    Everything else (inference, the schedule, checkpoints) is a LocalTrainer's.
    """

    def __init__(self, shard: nn.Module, unit_range: tuple[int, int], units: int,
                 hparams: FFHyperParams, device: str | torch.device = 'cpu') -> None:
        self.start, self.stop = unit_range
        width = int(shard.weight.shape[0])
        if width != self.stop - self.start:
            raise ValueError(f'shard has {width} units, its range {unit_range} holds '
                             f'{self.stop - self.start}')
        if not 0 <= self.start < self.stop <= units:
            raise ValueError(f'shard range {unit_range} lies outside 0..{units}')
        self.units = units
        super().__init__(shard, hparams, device)
        self._own: Optional[Tensor] = None   # this shard's partial sums, in the graph
        self._h: Optional[Tensor] = None     # the last forward's activities (detached)
        self._n_pos = 0
        self._per_unit = 1                   # elements per unit of a sample (H*W of a conv)

    def _grouped_units(self, layer: nn.Module) -> int:
        return self.units  # class groups divide the whole layer, not this shard

    @property
    def pending(self) -> bool:
        """Return whether a forward waits for the other shards' partial sums."""
        return self._own is not None

    def partial_width(self) -> int:
        """How many partial sums per sample a forward returns (K)."""
        if self.class_groups:
            return self.class_groups
        shape = getattr(self.layer, 'out_shape', None)
        if self.hparams.goodness_scope == 'position' and shape is not None and len(shape) == 3:
            return int(shape[1] * shape[2])
        return 1

    def _partials(self, h: Tensor) -> Tensor:
        """(B, K) sums of squared activities of this shard's units."""
        squares = h.pow(2)
        self._per_unit = int(h[0].numel() // h.shape[1]) if h.shape[0] else 1
        if self.class_groups:
            per_unit = squares.flatten(2).sum(2) if h.dim() > 2 else squares
            per_group = self.units // self.class_groups
            group_of_unit = torch.arange(self.start, self.stop, device=h.device) // per_group
            return per_unit.new_zeros(h.shape[0], self.class_groups).index_add(
                1, group_of_unit, per_unit)
        if self.hparams.goodness_scope == 'position' and h.dim() == 4:
            return squares.sum(dim=1).flatten(1)
        return squares.flatten(1).sum(dim=1, keepdim=True)

    def _reduced(self, sums: Tensor) -> Tensor:
        """Partial sums of the whole layer -> goodness with the layer's reduction."""
        if self.hparams.goodness != 'mean':
            return sums
        if self.class_groups:
            return sums / ((self.units // self.class_groups) * self._per_unit)
        if self.hparams.goodness_scope == 'position' and sums.shape[1] > 1:
            return sums / self.units
        return sums / (self.units * self._per_unit)

    def forward(self, x: Tensor, x_neg: Optional[Tensor] = None) -> Tensor:
        """Return this shard's partial sums (detached) to add to the other shards'."""
        if self.class_groups and x_neg is not None:
            raise ValueError('a class_groups shard trains on labelled batches, not on pairs')
        if not self.class_groups and x_neg is None:
            raise ValueError('a pos_neg shard trains on positives and negatives')
        self.layer.train()
        self._schedule_lr()
        self._n_pos = x.shape[0]
        inputs = x if x_neg is None else torch.cat([x, x_neg])
        h = self.layer(inputs.to(self.device))
        self._own = self._partials(h)
        self._h = h.detach()
        return self._own.detach()

    def finish(self, total: Tensor, y: Optional[Tensor] = None) -> StepResult:
        """Take one step of the whole layer's loss, from every shard's partial sums added."""
        if self._own is None:
            raise RuntimeError('finish() needs a forward() first')
        total = total.to(self._own.device)
        if total.shape != self._own.shape:
            raise ValueError(f"partial sums of shape {tuple(total.shape)}; this shard's are "
                             f'{tuple(self._own.shape)}')
        sums = self._own + (total - self._own.detach())  # the others' part: a constant
        g = self._reduced(sums)
        if self.class_groups:
            if y is None:
                raise ValueError('a class_groups shard needs the labels to finish')
            y = y.to(g.device).long()
            loss = class_group_loss(g * self.hparams.logit_scale, y)
            true, others = true_and_other_goodness(g.detach(), y)
            g_pos, g_neg = true.mean(), others.mean()
        else:
            g_pos_all, g_neg_all = g[:self._n_pos], g[self._n_pos:]
            loss = ff_loss(g_pos_all.flatten(), g_neg_all.flatten(), self.hparams.threshold,
                           self.hparams.loss, self.hparams.symba_alpha)
            g_pos, g_neg = g_pos_all.detach().mean(), g_neg_all.detach().mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        h = self._h
        self._own = self._h = None
        self.batches_seen += 1
        self.steps_seen += 1
        scalars = torch.stack([loss.detach(), g_pos, g_neg])
        if self.class_groups:  # silent groups: of the whole layer, as every shard sees it
            scalars = torch.cat([scalars, silent_group_mask(g).to(scalars.dtype)]).cpu()
            return StepResult(float(scalars[0]), float(scalars[1]), float(scalars[2]),
                              h, h.new_empty((0, *h.shape[1:])),
                              silent_groups=silent_indices(scalars[3:]))
        scalars = scalars.cpu()
        return StepResult(float(scalars[0]), float(scalars[1]), float(scalars[2]),
                          h[:self._n_pos], h[self._n_pos:])

    def abandon(self) -> None:
        """Forget a forward whose partial sums will not all come (a pause, a reset)."""
        self._own = self._h = None
