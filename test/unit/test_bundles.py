"""Bundles: several training batches in one message, trained exactly as if sent alone."""
from __future__ import annotations

from dff_lifecycle.core.ff.layers import build_layer
from dff_lifecycle.core.ff.local_trainer import LocalTrainer
from dff_lifecycle.core.hyperparams import FFHyperParams
from dff_lifecycle.core.stage.batch_codec import CodecError, Kind, pack_classed, pack_pair
from dff_lifecycle.core.stage.bundles import header_rows, pack_bundle, unpack_bundle
from dff_lifecycle.core.stage.layer_stage import InputRejected, LayerStage, StageSettings
from dff_lifecycle.core.stage.stage_ops import StageOps
import pytest
import torch

D = 12


def pair(seed: int, n: int = 5) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return pack_pair(torch.rand(n, D, generator=g), torch.rand(n, D, generator=g))


def stage(**hp) -> LayerStage:
    layer, _ = build_layer('FFDense', D, [8], 0)
    trainer = LocalTrainer(layer, FFHyperParams(lr=0.05, **hp))
    return LayerStage(trainer, StageSettings(in_features=D))


def test_a_bundle_round_trips_its_batches_seqs_and_kind():
    parts = [(7, pair(1)), (8, pair(2, n=3)), (10, pair(3))]
    kind, got = unpack_bundle(pack_bundle(Kind.TRAIN_PAIR, parts, 10), 10)
    assert kind == Kind.TRAIN_PAIR
    assert [seq for seq, _ in got] == [7, 8, 10]
    for (_, want), (_, tensor) in zip(parts, got):
        assert torch.equal(tensor, want)


def test_a_header_longer_than_a_row_takes_several_rows():
    narrow = [(s, torch.rand(2, 3)) for s in range(5)]  # 12 header numbers, 3 columns
    bundle = pack_bundle(Kind.TRAIN_CLASSED, narrow, 4)
    assert header_rows(5, 3) == 4 and bundle.shape == (4 + 10, 3)
    _, got = unpack_bundle(bundle, 4)
    assert [s for s, _ in got] == list(range(5))
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(narrow, got))


def test_malformed_bundles_are_refused():
    good = pack_bundle(Kind.TRAIN_PAIR, [(0, pair(1)), (1, pair(2))], 1)
    for broken in (good[:-1], good[:, :1], torch.zeros(3, D), good.flatten()):
        with pytest.raises(CodecError):
            unpack_bundle(broken, 1)
    with pytest.raises(CodecError):
        unpack_bundle(good, 0)  # a seq after the bundle's own
    with pytest.raises(CodecError):
        pack_bundle(Kind.INFERENCE, [(0, pair(1))], 0)
    with pytest.raises(CodecError):
        pack_bundle(Kind.TRAIN_PAIR, [(0, pair(1)), (0, pair(2))], 0)
    with pytest.raises(CodecError):
        pack_bundle(Kind.TRAIN_PAIR, [(0, pair(1)), (1, torch.rand(4, D + 1))], 1)
    nested = good.clone()
    nested[0, 1] = float(Kind.BUNDLE)
    with pytest.raises(CodecError):
        unpack_bundle(nested, 1)


def test_a_bundle_trains_the_same_weights_and_sends_the_same_activities_as_batches_alone():
    batches = [(seq, pair(seq)) for seq in range(6)]
    alone, bundled = stage(), stage()
    alone_out = [alone.process('s', seq, Kind.TRAIN_PAIR, t)[0].tensor for seq, t in batches]
    outs = []
    for group in (batches[:4], batches[4:]):
        last = group[-1][0]
        (out,) = bundled.process('s', last, Kind.BUNDLE, pack_bundle(Kind.TRAIN_PAIR, group, last))
        assert out.kind == Kind.BUNDLE and out.channel == 'train'
        inner, parts = unpack_bundle(out.tensor, last)
        assert inner == Kind.TRAIN_PAIR
        outs += [t for _, t in parts]
    assert torch.equal(alone.trainer.layer.weight, bundled.trainer.layer.weight)
    assert alone.trainer.batches_seen == bundled.trainer.batches_seen == 6
    for a, b in zip(alone_out, outs):
        assert torch.equal(a.reshape(a.shape[0], -1), b)
    assert bundled.trained_keys() == [['s', seq] for seq in range(6)]


def test_a_bundle_sent_again_after_part_of_it_trained_trains_only_the_rest():
    batches = [(seq, pair(seq)) for seq in range(4)]
    alone, bundled = stage(), stage()
    for seq, t in batches:
        alone.process('s', seq, Kind.TRAIN_PAIR, t)
    for seq, t in batches[:2]:  # trained alone before the bundle was resent whole
        bundled.process('s', seq, Kind.TRAIN_PAIR, t)
    bundled.process('s', 3, Kind.BUNDLE, pack_bundle(Kind.TRAIN_PAIR, batches, 3))
    bundled.process('s', 3, Kind.BUNDLE, pack_bundle(Kind.TRAIN_PAIR, batches, 3))  # again
    assert bundled.trainer.batches_seen == 4
    assert torch.equal(alone.trainer.layer.weight, bundled.trainer.layer.weight)


def test_class_group_bundles_keep_their_labels():
    groups = 4
    hp = {'objective': 'class_groups', 'groups': groups, 'logit_scale': 4.0}
    g = torch.Generator().manual_seed(0)
    batches = [(seq, pack_classed(torch.rand(6, D, generator=g),
                                  torch.randint(0, groups, (6,), generator=g)))
               for seq in range(3)]
    alone, bundled = stage(**hp), stage(**hp)
    want = [alone.process('s', seq, Kind.TRAIN_CLASSED, t)[0].tensor for seq, t in batches]
    (out,) = bundled.process('s', 2, Kind.BUNDLE, pack_bundle(Kind.TRAIN_CLASSED, batches, 2))
    inner, parts = unpack_bundle(out.tensor, 2)
    assert inner == Kind.TRAIN_CLASSED
    assert all(torch.equal(a, b) for a, (_, b) in zip(want, parts))
    assert torch.equal(alone.trainer.layer.weight, bundled.trainer.layer.weight)


def test_a_joining_stage_joins_each_batch_of_bundles_from_both_inputs():
    def joiner() -> LayerStage:
        layer, _ = build_layer('FFDense', 2 * D, [8], 0)
        ops = StageOps([(D,), (D,)], 1, [])
        return LayerStage(LocalTrainer(layer, FFHyperParams(lr=0.05)),
                          StageSettings(in_features=2 * D), ops=ops)
    left = [(seq, pair(seq)) for seq in range(3)]
    right = [(seq, pair(10 + seq)) for seq in range(3)]
    alone, bundled = joiner(), joiner()
    for (seq, a), (_, b) in zip(left, right):
        alone.process('s', seq, Kind.TRAIN_PAIR, a, 0)
        alone.process('s', seq, Kind.TRAIN_PAIR, b, 1)
    assert bundled.process('s', 2, Kind.BUNDLE, pack_bundle(Kind.TRAIN_PAIR, left, 2), 0) == []
    (out,) = bundled.process('s', 2, Kind.BUNDLE, pack_bundle(Kind.TRAIN_PAIR, right, 2), 1)
    assert len(unpack_bundle(out.tensor, 2)[1]) == 3
    assert torch.equal(alone.trainer.layer.weight, bundled.trainer.layer.weight)


def test_a_malformed_bundle_is_rejected_as_input():
    with pytest.raises(InputRejected):
        stage().process('s', 0, Kind.BUNDLE, torch.zeros(2, D))


def test_a_bundle_lost_before_a_later_one_holds_the_watermark_until_it_is_resent():
    """
    The CI case: a subscription created again by a pause missed bundle 0-3 and got 4-7.

    The layer's watermark (what the master counts as done) stays below the lost bundle,
    whose batches no layer trained; the resend trains them and releases the count.
    """
    batches = [(seq, pair(seq)) for seq in range(8)]
    layer = stage()
    layer.process('s', 7, Kind.BUNDLE, pack_bundle(Kind.TRAIN_PAIR, batches[4:], 7))
    assert layer.watermark.through('s') == -1 and layer.trainer.batches_seen == 4
    layer.process('s', 3, Kind.BUNDLE, pack_bundle(Kind.TRAIN_PAIR, batches[:4], 3))
    assert layer.watermark.through('s') == 7 and layer.trainer.batches_seen == 8


def test_a_restored_layer_counts_from_its_checkpoint():
    done = stage()
    for seq in range(3):
        done.process('s', seq, Kind.TRAIN_PAIR, pair(seq))
    restored = stage()
    restored.restore_trained(done.trained_keys())
    assert restored.watermark.through('s') == 2
    restored.process('s', 3, Kind.TRAIN_PAIR, pair(3))
    assert restored.watermark.through('s') == 3
