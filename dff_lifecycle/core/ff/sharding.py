"""
A layer wider than any one device: its output units split into shards, one per device.

FF's loss needs nothing of a layer's activities but each sample's goodness, a sum of
squared activities over the units (per class group under class_groups). So a dense
layer split by output units trains exactly as the whole layer when its shards
exchange their partial sums: one number per sample (`groups` numbers under
class_groups), not activities. Each shard normalises the same input, computes its
units' activities and their partial sums of squares (`forward`); once the partial
sums of all shards are added up, each shard computes the whole layer's loss from them,
back-propagates into its own rows of the weights only, and steps its own optimizer
(`finish`). The next layer reads the shards' activities concatenated in unit order.

Per-element optimizers (SGD, Adam, AdamW) make the shards' updates the whole layer's,
row for row; the unit test checks goodness, loss and weights after several steps.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from dff_lifecycle.core.ff.layers import FFDense
from dff_lifecycle.core.ff.local_trainer import make_optimizer
from dff_lifecycle.core.hyperparams import FFHyperParams
from dff_lifecycle.core.objectives.class_groups import (check_groups, class_group_loss,
                                                        true_and_other_goodness)
from dff_lifecycle.core.objectives.pos_neg import ff_loss
import torch
from torch import Tensor


def shard_ranges(units: int, shards: int) -> list[tuple[int, int]]:
    """Contiguous [start, stop) unit ranges of near-equal size, in order."""
    if not 1 <= shards <= units:
        raise ValueError(f'cannot split {units} units into {shards} shards (1 .. {units})')
    bounds = [round(i * units / shards) for i in range(shards + 1)]
    return list(zip(bounds, bounds[1:]))


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


@dataclass(frozen=True)
class ShardStep:
    loss: float
    goodness_pos: float
    goodness_neg: float


class ShardTrainer:
    """
    Trains one shard (units [start, stop) of a `units`-wide dense layer) in two phases.

    pos_neg: `forward(x_pos, x_neg)` -> partial sums (2B, 1); class_groups: `forward(x)`
    -> (B, groups). Then `finish(total[, y])` with the partial sums of every shard added.
    """

    def __init__(self, shard: FFDense, unit_range: tuple[int, int], units: int,
                 hparams: FFHyperParams) -> None:
        self.hparams = hparams.validate()
        self.start, self.stop = unit_range
        if shard.out_features != self.stop - self.start:
            raise ValueError(f'shard has {shard.out_features} units, its range '
                             f'{unit_range} holds {self.stop - self.start}')
        self.units = units
        self.groups = hparams.groups if hparams.objective == 'class_groups' else 0
        if self.groups:
            check_groups(units, self.groups)
        shard.set_input_norm(self.hparams.resolved_input_norm(False))  # as LocalTrainer does
        self.layer = shard
        self.optimizer = make_optimizer(shard.parameters(), hparams)
        self._own: Optional[Tensor] = None   # this shard's partial sums, in the graph
        self._n_pos = 0
        self.h: Optional[Tensor] = None      # the last forward's activities (detached)

    def _partials(self, h: Tensor) -> Tensor:
        """(B, K) sums of squared activities: K = 1, or per class group of the whole layer."""
        squares = h.pow(2)
        if not self.groups:
            return squares.sum(dim=1, keepdim=True)
        per_group = self.units // self.groups
        group_of_unit = torch.arange(self.start, self.stop, device=h.device) // per_group
        out = squares.new_zeros(h.shape[0], self.groups)
        return out.index_add(1, group_of_unit, squares)

    def forward(self, x: Tensor, x_neg: Optional[Tensor] = None) -> Tensor:
        """Return this shard's partial sums (detached) to add to the other shards'."""
        self.layer.train()
        self._n_pos = x.shape[0]
        inputs = x if x_neg is None else torch.cat([x, x_neg])
        h = self.layer(inputs)
        self._own = self._partials(h)
        self.h = h.detach()
        return self._own.detach()

    def finish(self, total: Tensor, y: Optional[Tensor] = None) -> ShardStep:
        """Take one step of the whole layer's loss, from every shard's partial sums added."""
        if self._own is None:
            raise RuntimeError('finish() needs a forward() first')
        sums = self._own + (total - self._own.detach())  # the others' part: a constant
        reduce = self.hparams.goodness == 'mean'
        if self.groups:
            g = sums / (self.units // self.groups) if reduce else sums
            loss = class_group_loss(g * self.hparams.logit_scale, y)
            true, others = true_and_other_goodness(g.detach(), y)
            g_pos, g_neg = true.mean(), others.mean()
        else:
            g = (sums / self.units if reduce else sums).flatten()
            g_pos_all, g_neg_all = g[:self._n_pos], g[self._n_pos:]
            loss = ff_loss(g_pos_all, g_neg_all, self.hparams.threshold, self.hparams.loss,
                           self.hparams.symba_alpha)
            g_pos, g_neg = g_pos_all.detach().mean(), g_neg_all.detach().mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self._own = None
        return ShardStep(float(loss.detach()), float(g_pos), float(g_neg))
