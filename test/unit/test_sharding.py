"""A dense layer split by output units trains exactly as the whole layer (issue #21 item 3)."""
from __future__ import annotations

import dataclasses

from dff_lifecycle.core.ff.layers import build_row, FFConv2d, FFDense, reset_linear_rows_
from dff_lifecycle.core.ff.local_trainer import LocalTrainer
from dff_lifecycle.core.ff.sharding import (build_shard, shard_ranges, ShardTrainer,
                                            split_dense)
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
        h = torch.cat([torch.cat([st.h_pos, st.h_neg]) for st in steps], dim=1)  # gathered
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
    with pytest.raises(ValueError, match='cannot be split'):
        build_shard('MaxPool2d', (3, 8, 8), [2], (0, 1), 0)


def split_conv(layer: FFConv2d, ranges) -> list[FFConv2d]:
    parts = []
    for start, stop in ranges:
        part = FFConv2d(layer.in_shape, stop - start, 3, 1, 1)
        part.set_input_norm(layer.input_norm)
        with torch.no_grad():
            part.weight.copy_(layer.weight[start:stop])
            part.bias.copy_(layer.bias[start:stop])
        parts.append(part)
    return parts


@pytest.mark.parametrize('scope', ['map', 'position'])
def test_split_conv_layer_matches_the_whole_layer_by_channels(scope):
    hparams = FFHyperParams(lr=0.01, threshold=1.0, goodness_scope=scope)
    layer = FFConv2d((3, 8, 8), 12, 3, 1, 1, generator=torch.Generator().manual_seed(4))
    ranges = shard_ranges(12, 3)
    shards = [ShardTrainer(p, r, 12, hparams) for p, r in zip(split_conv(layer, ranges), ranges)]
    whole = LocalTrainer(layer, hparams)
    gen = torch.Generator().manual_seed(5)
    for _ in range(3):
        x_pos = torch.randn(4, 3, 8, 8, generator=gen)
        x_neg = torch.randn(4, 3, 8, 8, generator=gen)
        total = sum(s.forward(x_pos, x_neg) for s in shards)
        steps = [s.finish(total) for s in shards]
        result = whole.step(x_pos, x_neg)
        assert steps[1].loss == pytest.approx(result.loss, rel=1e-5)
        gathered_h = torch.cat([st.h_pos for st in steps], dim=1)  # channel order
        assert torch.allclose(gathered_h, result.h_pos, atol=1e-5)
    weight = torch.cat([s.layer.weight for s in shards])
    assert torch.allclose(weight, whole.layer.weight, atol=1e-5)


@pytest.mark.parametrize('layer_type, in_shape, args', [
    ('FFDense', (20,), [10]), ('FFConv2d', (3, 6, 6), [10, 3, 1, 1])])
def test_shards_start_as_slices_of_the_whole_layers_seeded_weights(layer_type, in_shape, args):
    whole, _ = build_row(layer_type, [in_shape], args, 3)
    ranges = shard_ranges(10, 3)
    parts = [build_shard(layer_type, in_shape, args, r, seed=3) for r in ranges]
    assert torch.equal(torch.cat([p.weight for p in parts]), whole.weight)
    assert torch.equal(torch.cat([p.bias for p in parts]), whole.bias)
    small = torch.zeros(4, 20)  # drawn in blocks of one row: the same numbers
    reset_linear_rows_(small, None, torch.Generator().manual_seed(3), (3, 7), 10,
                       chunk_elements=1)
    assert torch.equal(small, build_row('FFDense', [(20,)], [10], 3)[0].weight[3:7])


def test_a_shard_trainer_waits_between_its_two_phases():
    ranges = shard_ranges(10, 3)
    layer = build_shard('FFDense', (20,), [10], ranges[1], seed=3)
    assert layer.weight.shape == (4, 20)
    trainer = ShardTrainer(layer, ranges[1], 10, FFHyperParams())
    assert trainer.partial_width() == 1 and not trainer.pending
    trainer.forward(torch.randn(2, 20), torch.randn(2, 20))
    assert trainer.pending
    trainer.abandon()
    assert not trainer.pending
