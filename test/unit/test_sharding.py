"""A dense layer split by output units trains exactly as the whole layer (issue #21 item 3)."""
from __future__ import annotations

import dataclasses

from dff_lifecycle.core.ff.layers import FFDense
from dff_lifecycle.core.ff.local_trainer import LocalTrainer
from dff_lifecycle.core.ff.sharding import shard_ranges, ShardTrainer, split_dense
from dff_lifecycle.core.hyperparams import FFHyperParams
import pytest
import torch

IN, UNITS, BATCH = 64, 60, 16


def whole_and_shards(hparams: FFHyperParams, shards: int):
    layer = FFDense(IN, UNITS, generator=torch.Generator().manual_seed(1))
    ranges = shard_ranges(UNITS, shards)
    parts = split_dense(layer, ranges)  # copies, before the whole layer trains
    whole = LocalTrainer(layer, hparams)
    return whole, [ShardTrainer(p, r, UNITS, hparams) for p, r in zip(parts, ranges)]


def gathered(trainers) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.cat([t.layer.weight for t in trainers]),
            torch.cat([t.layer.bias for t in trainers]))


@pytest.mark.parametrize('goodness', ['mean', 'sum'])
@pytest.mark.parametrize('optimizer', ['adam', 'sgd'])
def test_split_pos_neg_layer_matches_the_whole_layer_step_by_step(goodness, optimizer):
    hparams = FFHyperParams(goodness=goodness, optimizer=optimizer, lr=0.01,
                            threshold=2.0 if goodness == 'mean' else 20.0)
    whole, shards = whole_and_shards(hparams, 3)
    gen = torch.Generator().manual_seed(2)
    for _ in range(4):
        x_pos, x_neg = torch.randn(BATCH, IN, generator=gen), torch.randn(BATCH, IN, generator=gen)
        total = sum(s.forward(x_pos, x_neg) for s in shards)  # one number per sample each
        steps = [s.finish(total) for s in shards]
        result = whole.step(x_pos, x_neg)
        assert all(step.loss == pytest.approx(result.loss, rel=1e-5) for step in steps)
        assert steps[0].goodness_pos == pytest.approx(result.goodness_pos, rel=1e-5)
        assert steps[0].goodness_neg == pytest.approx(result.goodness_neg, rel=1e-5)
        h = torch.cat([s.h for s in shards], dim=1)  # what the next layer reads
        assert torch.allclose(h, torch.cat([result.h_pos, result.h_neg]), atol=1e-5)
    weight, bias = gathered(shards)
    assert torch.allclose(weight, whole.layer.weight, atol=1e-5)
    assert torch.allclose(bias, whole.layer.bias, atol=1e-5)


def test_split_class_group_layer_matches_even_when_shards_cut_through_groups():
    hparams = dataclasses.replace(FFHyperParams(objective='class_groups', lr=0.01), groups=10)
    whole, shards = whole_and_shards(hparams, 4)  # 15 units each: groups of 6 are cut
    gen = torch.Generator().manual_seed(3)
    for _ in range(3):
        x, y = torch.randn(BATCH, IN, generator=gen), torch.randint(10, (BATCH,), generator=gen)
        total = sum(s.forward(x) for s in shards)  # ten numbers per sample each
        steps = [s.finish(total, y) for s in shards]
        result = whole.step_classes(x, y)
        assert steps[-1].loss == pytest.approx(result.loss, rel=1e-5)
        assert steps[-1].goodness_pos == pytest.approx(result.goodness_pos, rel=1e-5)
    weight, _ = gathered(shards)
    assert torch.allclose(weight, whole.layer.weight, atol=1e-5)


def test_ranges_cover_every_unit_once_and_bad_splits_are_refused():
    assert shard_ranges(10, 3) == [(0, 3), (3, 7), (7, 10)]
    assert shard_ranges(4, 4) == [(0, 1), (1, 2), (2, 3), (3, 4)]
    with pytest.raises(ValueError, match='cannot split 4 units into 5 shards'):
        shard_ranges(4, 5)
    shard = FFDense(IN, 5)
    with pytest.raises(ValueError, match='shard has 5 units'):
        ShardTrainer(shard, (0, 6), UNITS, FFHyperParams())
    with pytest.raises(RuntimeError, match='forward'):
        ShardTrainer(shard, (0, 5), UNITS, FFHyperParams()).finish(torch.zeros(2, 1))
