"""Replicas of one layer: alternate batches, weights averaged by rounds, equal at the end."""
from __future__ import annotations

import copy
import random

from dff_lifecycle.core.ff.layers import FFDense
from dff_lifecycle.core.ff.local_trainer import LocalTrainer
from dff_lifecycle.core.ff.replicas import flat_state, move_to_mean, owner_of
from dff_lifecycle.core.hyperparams import FFHyperParams
from dff_lifecycle.core.stage.batch_codec import Kind, pack_pair
from dff_lifecycle.core.stage.layer_stage import InputRejected, LayerStage, StageSettings
from dff_lifecycle.core.stage.replica_stage import decode_round, ReplicaStage
import pytest
import torch

IN, UNITS, BATCH = 24, 16, 8
STREAM = 'train_r1'
SGD = FFHyperParams(lr=0.05, threshold=2.0, optimizer='sgd')


def layer(seed=1):
    return FFDense(IN, UNITS, generator=torch.Generator().manual_seed(seed))


def batches(count, seed=2):
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(BATCH, IN, generator=gen), torch.randn(BATCH, IN, generator=gen))
            for _ in range(count)]


class Fabric:
    """n replicas of one layer; each hears every batch; snapshots go to every peer."""

    def __init__(self, replicas, hparams=SGD, sync_every=2, stream_batches=0, seed=0):
        settings = StageSettings(in_features=IN)
        base = layer()
        self.stages = [ReplicaStage(LocalTrainer(copy.deepcopy(base), hparams), settings, k,
                                    replicas, sync_every, stream_batches)
                       for k in range(replicas)]
        self.mail = []      # (to, seq, tensor, position)
        self.forwarded = {}  # seq -> replica that sent activities on
        self.rng = random.Random(seed)

    def feed(self, seq, pair):
        for k, stage in enumerate(self.stages):
            self._take(k, seq, stage.process(STREAM, seq, Kind.TRAIN_PAIR, pair))

    def _take(self, k, seq, outputs):
        for out in outputs:
            if out.channel == 'sync':
                for peer in range(len(self.stages)):
                    if peer != k:
                        position = k if k < peer else k - 1
                        self.mail.append((peer, out.seq, out.tensor, position))
            elif out.channel == 'train':
                assert self.forwarded.get(seq, k) == k  # one owner per batch
                self.forwarded[seq] = k

    def deliver_all(self, shuffle=False):
        while self.mail:
            i = self.rng.randrange(len(self.mail)) if shuffle else 0
            peer, seq, tensor, position = self.mail.pop(i)
            outputs = self.stages[peer].process(STREAM, seq, Kind.REPLICA_WEIGHTS, tensor,
                                                position)
            self._take(peer, None, outputs)


def test_move_to_mean_keeps_the_sum_and_makes_equal_copies():
    a, b = layer(1), layer(2)
    sa, sb = flat_state(a), flat_state(b)
    mean = (sa + sb) / 2
    move_to_mean(a, [sa, sb], 0)
    move_to_mean(b, [sa, sb], 1)
    assert torch.allclose(flat_state(a), mean, atol=1e-6)
    assert torch.equal(flat_state(a), flat_state(b))
    # Trained after its snapshot: that progress stays on top of the mean.
    c, d = layer(3), layer(4)
    sc, sd = flat_state(c), flat_state(d)
    with torch.no_grad():
        c.weight.add_(1.0)
    move_to_mean(c, [sc, sd], 0)
    move_to_mean(d, [sc, sd], 1)
    drift = flat_state(c) - flat_state(d)
    assert torch.allclose(drift[:UNITS * IN], torch.ones(UNITS * IN), atol=1e-5)
    assert torch.allclose(drift[UNITS * IN:], torch.zeros(drift.numel() - UNITS * IN), atol=1e-5)
    assert torch.allclose(flat_state(c) + flat_state(d), sc + sd + (drift != 0).float(),
                          atol=1e-5)
    with pytest.raises(ValueError, match='replica 1 has 3 values'):
        move_to_mean(a, [sa, torch.zeros(3)], 0)


def test_two_replicas_equal_one_layer_on_the_joined_batches():
    """SGD, a round per two batches: the mean of two steps from W is one step on both."""
    data = batches(8)
    fabric = Fabric(2, sync_every=2, stream_batches=len(data))
    whole = LayerStage(LocalTrainer(layer(), SGD), StageSettings(in_features=IN))
    for seq, (pos, neg) in enumerate(data):
        fabric.feed(seq, pack_pair(pos, neg))
        if seq % 2:
            fabric.deliver_all()
            prev_pos, prev_neg = data[seq - 1]
            whole.process(STREAM, seq // 2, Kind.TRAIN_PAIR,
                          pack_pair(torch.cat([prev_pos, pos]), torch.cat([prev_neg, neg])))
            for stage in fabric.stages:
                assert torch.allclose(flat_state(stage.trainer.layer),
                                      flat_state(whole.trainer.layer), atol=1e-6)
    assert fabric.forwarded == {seq: owner_of(seq, 2) for seq in range(len(data))}
    assert [s.trainer.batches_seen for s in fabric.stages] == [4, 4]
    assert [s.rounds_applied for s in fabric.stages] == [4, 4]


@pytest.mark.parametrize('replicas', [2, 3])
def test_replicas_end_the_stream_with_equal_weights_whatever_the_mail_order(replicas):
    data = batches(11)
    fabric = Fabric(replicas, FFHyperParams(lr=0.03, threshold=2.0), sync_every=3,
                    stream_batches=len(data), seed=replicas)
    for seq, (pos, neg) in enumerate(data):
        fabric.feed(seq, pack_pair(pos, neg))
        if random.Random(seq).random() < 0.4:
            fabric.deliver_all(shuffle=True)
    last = len(data) - 1
    # Every batch passed, the last round not in: the reported watermark stops one short.
    for stage in fabric.stages:
        if stage.rounds_applied < 4:
            assert stage.through(STREAM) == last - 1
    fabric.deliver_all(shuffle=True)
    first = flat_state(fabric.stages[0].trainer.layer)
    for stage in fabric.stages:
        assert stage.through(STREAM) == last
        assert torch.equal(flat_state(stage.trainer.layer), first)
    assert sum(s.trainer.batches_seen for s in fabric.stages) == len(data)


def test_a_snapshot_of_an_applied_round_is_answered_once_never_echoed():
    data = batches(2)
    fabric = Fabric(2, sync_every=2, stream_batches=2)
    for seq, (pos, neg) in enumerate(data):
        fabric.feed(seq, pack_pair(pos, neg))
    mail = list(fabric.mail)
    fabric.deliver_all()
    # A restored peer sends round 0 again: the answer is this replica's round-0 snapshot.
    peer, seq, tensor, position = mail[0]
    outputs = fabric.stages[peer].process(STREAM, seq, Kind.REPLICA_WEIGHTS, tensor, position)
    assert [(o.channel, decode_round(o.seq)) for o in outputs] == [('sync', (0, True))]
    # The answer, heard by a replica that applied the round too, gets no answer back.
    assert fabric.stages[1 - peer].process(STREAM, outputs[0].seq, Kind.REPLICA_WEIGHTS,
                                           outputs[0].tensor, 0) == []


def test_inference_alternates_and_bad_input_is_refused():
    fabric = Fabric(2, sync_every=4)
    x = torch.randn(BATCH, IN)
    answered = [[bool(stage.process('infer_1', seq, Kind.INFERENCE, x)) for stage in fabric.stages]
                for seq in range(4)]
    assert answered == [[True, False], [False, True], [True, False], [False, True]]
    stage = fabric.stages[0]
    with pytest.raises(InputRejected, match='this layer has'):
        stage.process(STREAM, 0, Kind.REPLICA_WEIGHTS, torch.zeros(5), 0)
    with pytest.raises(InputRejected, match='1 peers'):
        stage.process(STREAM, 0, Kind.REPLICA_WEIGHTS, flat_state(stage.trainer.layer), 1)
    with pytest.raises(InputRejected, match='bundle:=1'):
        stage.process(STREAM, 0, Kind.BUNDLE, torch.zeros(4, IN))
    only_infers = ReplicaStage(stage.trainer, StageSettings(in_features=IN), 0, 2)
    pair = pack_pair(torch.randn(BATCH, IN), torch.randn(BATCH, IN))
    assert [o.channel for o in only_infers.process(STREAM, 0, Kind.TRAIN_PAIR, pair)] == ['train']
    with pytest.raises(ValueError, match='replicas >= 2'):
        ReplicaStage(stage.trainer, StageSettings(in_features=IN), 0, 1, 2)


def test_a_restored_replica_resumes_at_the_round_its_checkpoint_reached():
    data = batches(6)
    fabric = Fabric(2, sync_every=2, stream_batches=6)
    for seq in range(4):
        fabric.feed(seq, pack_pair(*data[seq]))
        fabric.deliver_all()
    keys = fabric.stages[1].trained_keys()
    restored = ReplicaStage(LocalTrainer(copy.deepcopy(fabric.stages[1].trainer.layer), SGD),
                            StageSettings(in_features=IN), 1, 2, 2, 6)
    restored.restore_trained(keys)
    assert restored.through(STREAM) == 3
    fabric.stages[1] = restored
    for seq in (4, 5):
        fabric.feed(seq, pack_pair(*data[seq]))
    fabric.deliver_all()
    assert [s.through(STREAM) for s in fabric.stages] == [5, 5]
    assert torch.equal(flat_state(fabric.stages[0].trainer.layer),
                       flat_state(restored.trainer.layer))


def test_a_resent_batch_sends_the_snapshots_of_open_rounds_again():
    data = batches(2)
    fabric = Fabric(2, sync_every=0, stream_batches=2)
    for seq, (pos, neg) in enumerate(data):
        fabric.feed(seq, pack_pair(pos, neg))
    fabric.mail = [m for m in fabric.mail if m[0] == 1]  # the snapshot to replica 0 is lost
    fabric.deliver_all()
    assert [s.through(STREAM) for s in fabric.stages] == [0, 1]  # replica 0 waits for it
    fabric.feed(1, pack_pair(*data[1]))  # the master resends the last batch
    fabric.deliver_all()
    assert [s.through(STREAM) for s in fabric.stages] == [1, 1]
    assert torch.equal(flat_state(fabric.stages[0].trainer.layer),
                       flat_state(fabric.stages[1].trainer.layer))


def test_an_earlier_round_heard_after_the_last_snapshot_does_not_part_the_copies():
    """All four batches in before any snapshot arrives; the round-0 ones are heard first."""
    data = batches(4)
    fabric = Fabric(2, FFHyperParams(lr=0.03, threshold=2.0), sync_every=2, stream_batches=4)
    for seq, (pos, neg) in enumerate(data):
        fabric.feed(seq, pack_pair(pos, neg))
    assert sorted(decode_round(m[1])[0] for m in fabric.mail) == [0, 0, 1, 1]
    fabric.deliver_all()  # in order: round 0 from both, then round 1
    assert [s.through(STREAM) for s in fabric.stages] == [3, 3]
    assert torch.equal(flat_state(fabric.stages[0].trainer.layer),
                       flat_state(fabric.stages[1].trainer.layer))
