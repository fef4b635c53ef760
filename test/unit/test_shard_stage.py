"""Shards of a split layer as stages: partial sums exchanged, any arrival order, same steps."""
from __future__ import annotations

import copy
import dataclasses
import random

from dff_lifecycle.core.ff.layers import FFDense
from dff_lifecycle.core.ff.local_trainer import LocalTrainer
from dff_lifecycle.core.ff.sharding import shard_ranges, ShardTrainer, split_dense
from dff_lifecycle.core.hyperparams import FFHyperParams
from dff_lifecycle.core.stage.batch_codec import Kind, pack_classed, pack_pair, unpack_classed, \
    unpack_pair
from dff_lifecycle.core.stage.layer_stage import InputRejected, LayerStage, StageSettings
from dff_lifecycle.core.stage.shard_stage import ShardStage
import pytest
import torch

IN, UNITS, BATCH, SHARDS = 32, 30, 8, 3


def build(hparams: FFHyperParams):
    layer = FFDense(IN, UNITS, generator=torch.Generator().manual_seed(1))
    ranges = shard_ranges(UNITS, SHARDS)
    parts = split_dense(layer, ranges)
    settings = StageSettings(in_features=IN, resend_cache_bytes=1 << 20)
    whole = LayerStage(LocalTrainer(layer, hparams), settings)
    shards = [ShardStage(ShardTrainer(p, r, UNITS, hparams), settings, i, SHARDS)
              for i, (p, r) in enumerate(zip(parts, ranges))]
    return whole, shards


class Fabric:
    """Delivers each shard's partial sums to its peers, in a shuffled order."""

    def __init__(self, shards, seed=0):
        self.shards = shards
        self.rng = random.Random(seed)
        self.mail = []          # (to, stream, seq, tensor, position)
        self.activities = {}    # (shard, seq) -> what it sent on

    def feed(self, shard, seq, kind, tensor):
        self._take(shard, self.shards[shard].process('train', seq, kind, tensor))

    def _take(self, shard, outputs):
        for out in outputs:
            if out.channel == 'partials':
                for peer in range(len(self.shards)):
                    if peer != shard:  # the peer's bindings skip itself
                        position = shard if shard < peer else shard - 1
                        self.mail.append((peer, out.seq, out.tensor, position))
            elif out.channel == 'train':
                self.activities.setdefault((shard, out.seq), []).append(out.tensor)

    def deliver_all(self):
        while self.mail:
            peer, seq, tensor, position = self.mail.pop(self.rng.randrange(len(self.mail)))
            outputs = self.shards[peer].process('train', seq, Kind.PARTIALS, tensor, position)
            self._take(peer, outputs)


def batches(count, seed=2):
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(BATCH, IN, generator=gen), torch.randn(BATCH, IN, generator=gen))
            for _ in range(count)]


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_shards_fed_out_of_step_train_as_the_whole_layer(seed):
    whole, shards = build(FFHyperParams(lr=0.01, threshold=2.0))
    fabric = Fabric(shards, seed)
    data = batches(5)
    rng = random.Random(seed)
    # Every shard gets every batch in order, but the shards run at their own pace.
    progress = [0] * SHARDS
    while min(progress) < len(data):
        shard = rng.choice([s for s in range(SHARDS) if progress[s] < len(data)])
        x_pos, x_neg = data[progress[shard]]
        fabric.feed(shard, progress[shard], Kind.TRAIN_PAIR, pack_pair(x_pos, x_neg))
        progress[shard] += 1
        if rng.random() < 0.5:
            fabric.deliver_all()
    fabric.deliver_all()
    for seq, (x_pos, x_neg) in enumerate(data):
        (expected,) = whole.process('train', seq, Kind.TRAIN_PAIR, pack_pair(x_pos, x_neg))
        parts = [unpack_pair(fabric.activities[(s, seq)][0]) for s in range(SHARDS)]
        h_pos = torch.cat([p[0] for p in parts], dim=1)
        want_pos, _ = unpack_pair(expected.tensor)
        assert torch.allclose(h_pos, want_pos, atol=1e-5)
    weight = torch.cat([s.trainer.layer.weight for s in shards])
    assert torch.allclose(weight, whole.trainer.layer.weight, atol=1e-5)
    assert all(s.trainer.batches_seen == len(data) for s in shards)
    assert shards[0].scalars.loss == pytest.approx(whole.scalars.loss, rel=1e-5)


def test_a_restored_peer_gets_the_partial_sums_of_its_missed_step_on_a_resend():
    whole, shards = build(FFHyperParams(lr=0.01, threshold=2.0))
    saved = copy.deepcopy(shards[2].trainer.state_dict())  # its checkpoint before batch 0
    fabric = Fabric(shards)
    data = batches(2)
    for seq, (x_pos, x_neg) in enumerate(data):
        for s in range(SHARDS):
            fabric.feed(s, seq, Kind.TRAIN_PAIR, pack_pair(x_pos, x_neg))
        fabric.deliver_all()
    # Shard 2 is lost and re-created from its checkpoint; the master replays both batches.
    hparams = FFHyperParams(lr=0.01, threshold=2.0)
    layer = FFDense(IN, 10)
    restored = ShardStage(ShardTrainer(layer, shard_ranges(UNITS, SHARDS)[2], UNITS, hparams),
                          StageSettings(in_features=IN), 2, SHARDS)
    restored.trainer.load_state_dict(saved)
    fabric.shards[2] = restored
    for seq, (x_pos, x_neg) in enumerate(data):
        for s in range(SHARDS):
            fabric.feed(s, seq, Kind.TRAIN_PAIR, pack_pair(x_pos, x_neg))
        fabric.deliver_all()
    for x_pos, x_neg in data:
        whole.trainer.step(x_pos, x_neg)
    assert torch.allclose(restored.trainer.layer.weight, whole.trainer.layer.weight[20:],
                          atol=1e-5)
    assert shards[0].trainer.batches_seen == 2  # the living shards did not train again


def test_a_pause_drops_the_waiting_step_and_the_resend_redoes_it():
    whole, shards = build(FFHyperParams(lr=0.01, threshold=2.0))
    fabric = Fabric(shards)
    (x_pos, x_neg), = batches(1)
    for s in range(SHARDS):
        fabric.feed(s, 0, Kind.TRAIN_PAIR, pack_pair(x_pos, x_neg))
    fabric.mail = [m for m in fabric.mail if m[0] != 1]  # shard 1 hears nothing: it waits
    fabric.deliver_all()
    assert shards[1].trainer.pending
    shards[1].drop_pending()
    assert not shards[1].trainer.pending
    for s in range(SHARDS):  # the master resends the batch
        fabric.feed(s, 0, Kind.TRAIN_PAIR, pack_pair(x_pos, x_neg))
    fabric.deliver_all()
    whole.trainer.step(x_pos, x_neg)
    weight = torch.cat([s.trainer.layer.weight for s in shards])
    assert torch.allclose(weight, whole.trainer.layer.weight, atol=1e-5)


def test_class_group_shards_exchange_ten_sums_per_sample():
    hparams = dataclasses.replace(FFHyperParams(objective='class_groups', lr=0.01), groups=10)
    whole, shards = build(hparams)
    fabric = Fabric(shards)
    gen = torch.Generator().manual_seed(3)
    x, y = torch.randn(BATCH, IN, generator=gen), torch.randint(10, (BATCH,), generator=gen)
    for s in range(SHARDS):
        fabric.feed(s, 0, Kind.TRAIN_CLASSED, pack_classed(x, y))
    assert all(m[2].shape == (BATCH, 10) for m in fabric.mail)
    fabric.deliver_all()
    (expected,) = whole.process('train', 0, Kind.TRAIN_CLASSED, pack_classed(x, y))
    h = torch.cat([unpack_classed(fabric.activities[(s, 0)][0], 10)[0] for s in range(SHARDS)],
                  dim=1)
    assert torch.allclose(h, unpack_classed(expected.tensor, 10)[0], atol=1e-5)


def test_malformed_partial_sums_and_bundles_are_refused():
    _, shards = build(FFHyperParams())
    with pytest.raises(InputRejected, match='expected'):
        shards[0].process('train', 0, Kind.PARTIALS, torch.zeros(BATCH, 3), 0)
    with pytest.raises(InputRejected, match='peers'):
        shards[0].process('train', 0, Kind.PARTIALS, torch.zeros(BATCH, 1), 5)
    with pytest.raises(InputRejected, match='bundle'):
        shards[0].process('train', 0, Kind.BUNDLE, torch.zeros(4, IN))
    with pytest.raises(ValueError, match='shards >= 2'):
        ShardStage(shards[0].trainer, StageSettings(in_features=IN), 0, 1)
