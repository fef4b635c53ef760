"""The layer stage: one tensor per batch, the first layer's overlay, exactly-once training."""
from __future__ import annotations

from dff_lifecycle.core.ff.layers import build_layer
from dff_lifecycle.core.ff.local_trainer import LocalTrainer
from dff_lifecycle.core.ff.negatives import candidate_inputs, overlay_labels
from dff_lifecycle.core.hyperparams import FFHyperParams
from dff_lifecycle.core.stage.batch_codec import (CodecError, expand_candidates, Kind,
                                                  pack_labelled, pack_pair, unpack_labelled,
                                                  unpack_pair)
from dff_lifecycle.core.stage.layer_stage import InputRejected, LayerStage, StageSettings
from dff_msgs.msg import TensorChunk
import pytest
import torch

D, C = 20, 4


def images(n=6, seed=0):
    return torch.rand(n, D, generator=torch.Generator().manual_seed(seed))


def stage(overlay=0, **kw) -> LayerStage:
    layer, _ = build_layer('FFDense', D, [8], 0)
    trainer = LocalTrainer(layer, FFHyperParams(lr=0.05))
    return LayerStage(trainer, StageSettings(in_features=D, overlay_classes=overlay, **kw))


def test_kinds_are_the_message_constants():
    for kind in Kind:
        assert getattr(TensorChunk, f'KIND_{kind.name}') == kind


def test_labelled_batch_overlays_exactly_as_the_master_did():
    x = images()
    y, wrong = torch.tensor([0, 1, 2, 3, 0, 1]), torch.tensor([1, 2, 3, 0, 1, 2])
    pos, neg = unpack_labelled(pack_labelled(x, y, wrong), C)
    assert torch.equal(pos, overlay_labels(x, y, C))
    assert torch.equal(neg, overlay_labels(x, wrong, C))


def test_candidates_match_inference_inputs():
    x = images()
    assert torch.equal(expand_candidates(x, C), candidate_inputs(x, C))


def test_pair_round_trip_and_bad_layouts():
    a, b = images(seed=1), images(seed=2)
    got = unpack_pair(pack_pair(a, b))
    assert torch.equal(got[0], a) and torch.equal(got[1], b)
    with pytest.raises(CodecError):
        unpack_pair(torch.zeros(3, D))
    with pytest.raises(CodecError):
        pack_pair(a, b[:2])
    packed = pack_labelled(images(), torch.zeros(6, dtype=torch.long),
                           torch.ones(6, dtype=torch.long))
    packed[0, -1] = 0.5
    with pytest.raises(CodecError):
        unpack_labelled(packed, C)
    packed[0, -1] = C  # out of range
    with pytest.raises(CodecError):
        unpack_labelled(packed, C)


def test_one_labelled_batch_equals_two_halves():
    """The first layer trained from images + labels ends where overlaid halves take it."""
    x = images()
    y, wrong = torch.tensor([0, 1, 2, 3, 0, 1]), torch.tensor([1, 2, 3, 0, 1, 2])
    whole, halves = stage(overlay=C), stage()
    out = whole.process('train', 0, Kind.TRAIN_LABELLED, pack_labelled(x, y, wrong))
    assert halves.process('train', 0, Kind.POSITIVE, overlay_labels(x, y, C)) == []
    out2 = halves.process('train', 0, Kind.NEGATIVE, overlay_labels(x, wrong, C))
    assert [o.kind for o in out] == [Kind.TRAIN_PAIR] == [o.kind for o in out2]
    assert torch.equal(out[0].tensor, out2[0].tensor)
    assert torch.equal(whole.trainer.layer.weight, halves.trainer.layer.weight)


def test_a_resent_batch_is_forwarded_without_a_second_update():
    s = stage()
    pair = pack_pair(images(seed=1), images(seed=2))
    first = s.process('train', 7, Kind.TRAIN_PAIR, pair)
    weight = s.trainer.layer.weight.detach().clone()
    again = s.process('train', 7, Kind.TRAIN_PAIR, pair)
    assert s.trainer.batches_seen == 1
    assert torch.equal(weight, s.trainer.layer.weight)
    assert again[0].tensor.shape == first[0].tensor.shape


def test_inference_reports_goodness_and_expands_candidates_in_the_first_layer():
    s = stage(overlay=C, report_goodness=True)
    out = s.process('infer', 0, Kind.INFER_IMAGES, images(n=3))
    assert [o.channel for o in out] == ['infer', 'result']
    assert out[0].tensor.shape == (3 * C, 8) and out[1].tensor.shape == (3 * C,)
    assert s.scalars.inference_batches == 1


@pytest.mark.parametrize('kind,tensor,overlay', [
    (Kind.TRAIN_LABELLED, torch.zeros(4, D + 2), 0),   # not the first layer
    (Kind.INFER_IMAGES, torch.zeros(4, D), 0),
    (Kind.TRAIN_LABELLED, torch.zeros(4, D), C),       # no label columns
    (Kind.TRAIN_PAIR, torch.zeros(4, D + 1), 0),       # wrong width
    (Kind.TRAIN_PAIR, torch.zeros(3, D), 0),           # odd rows
    (Kind.GOODNESS, torch.zeros(4), 0),                # not an input kind
    (99, torch.zeros(4, D), 0),
])
def test_unusable_inputs_are_rejected_without_training(kind, tensor, overlay):
    s = stage(overlay=overlay)
    with pytest.raises(InputRejected):
        s.process('train', 0, kind, tensor)
    assert s.trainer.batches_seen == 0


@pytest.mark.parametrize('bad', [float('nan'), float('inf'), -float('inf')])
def test_non_finite_inputs_are_rejected_and_the_weights_stay_clean(bad):
    s = stage()
    pair = pack_pair(images(seed=1), images(seed=2))
    pair[3, 5] = bad
    with pytest.raises(InputRejected, match='NaN or Inf'):
        s.process('train', 0, Kind.TRAIN_PAIR, pair)
    assert s.trainer.batches_seen == 0
    assert bool(torch.isfinite(s.trainer.layer.weight).all())


def test_a_restored_stage_forwards_what_its_checkpoint_trained():
    first = stage()
    pair = pack_pair(images(seed=1), images(seed=2))
    first.process('train', 3, Kind.TRAIN_PAIR, pair)
    keys = first.trained_keys()
    assert keys == [['train', 3]]
    restored = stage()
    restored.restore_trained(keys + [['bad'], 'junk', [1, 2]])  # malformed entries ignored
    restored.process('train', 3, Kind.TRAIN_PAIR, pair)
    assert restored.trainer.batches_seen == 0  # forwarded, not trained again
    restored.process('train', 4, Kind.TRAIN_PAIR, pair)
    assert restored.trainer.batches_seen == 1


def test_checkpoints_every_n_batches_and_every_n_seconds():
    now = [0.0]
    saves = []
    layer, _ = build_layer('FFDense', D, [8], 0)
    s = LayerStage(LocalTrainer(layer, FFHyperParams(lr=0.05)),
                   StageSettings(in_features=D, save_every_batches=3, save_every_s=10.0),
                   save=lambda: saves.append(s.trainer.batches_seen), clock=lambda: now[0])
    pair = pack_pair(images(seed=1), images(seed=2))
    for seq in range(4):
        s.process('train', seq, Kind.TRAIN_PAIR, pair)
    assert saves == [3]
    now[0] = 11.0  # over save_every_s since the last checkpoint
    s.process('train', 4, Kind.TRAIN_PAIR, pair)
    assert saves == [3, 5]


def test_a_repeat_sends_the_activities_of_the_first_time_while_cached():
    cached = stage(resend_cache_bytes=1 << 20)
    first_pair, later_pair = (pack_pair(images(seed=s), images(seed=s + 1)) for s in (1, 5))
    first = cached.process('train', 1, Kind.TRAIN_PAIR, first_pair)[0].tensor
    cached.process('train', 2, Kind.TRAIN_PAIR, later_pair)  # the weights move on
    assert torch.equal(cached.process('train', 1, Kind.TRAIN_PAIR, first_pair)[0].tensor, first)
    uncached = stage()
    again = uncached.process('train', 1, Kind.TRAIN_PAIR, first_pair)[0].tensor
    uncached.process('train', 2, Kind.TRAIN_PAIR, later_pair)
    assert not torch.equal(uncached.process('train', 1, Kind.TRAIN_PAIR, first_pair)[0].tensor,
                           again)  # recomputed with the newer weights
    tiny = stage(resend_cache_bytes=first.numel() * 4)  # room for one batch
    tiny.process('train', 1, Kind.TRAIN_PAIR, first_pair)
    tiny.process('train', 2, Kind.TRAIN_PAIR, later_pair)
    assert list(tiny._sent) == [('train', 2)]


def test_costly_checkpoints_are_spaced_out_to_a_tenth_of_the_time():
    """A 2 s save (a wide layer on a slow device) may not run every second: every 20 s."""
    now = [0.0]
    saves = []
    layer, _ = build_layer('FFDense', D, [8], 0)

    def save():
        saves.append(now[0])
        now[0] += 2.0

    s = LayerStage(LocalTrainer(layer, FFHyperParams(lr=0.05)),
                   StageSettings(in_features=D, save_every_batches=1, save_every_s=1.0),
                   save=save, clock=lambda: now[0])
    pair = pack_pair(images(seed=1), images(seed=2))
    for seq in range(40):
        s.process('train', seq, Kind.TRAIN_PAIR, pair)
        now[0] += 1.0
    assert s.checkpoint_interval_s == pytest.approx(20.0)
    gaps = [b - a for a, b in zip(saves, saves[1:])]
    assert saves and all(gap >= 20.0 for gap in gaps)
    assert 2 <= len(saves) <= 4   # not 40
