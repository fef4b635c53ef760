"""Learning from a stream: batches as they fill, a bounded replay, the same as offline."""
from __future__ import annotations

from pathlib import Path

from dff_lifecycle.core.config import load_layer_config, load_model_config
from dff_lifecycle.core.ff.network import FFNetwork
from dff_lifecycle.core.run.stream_learning import ReplayBuffer, StreamLearner
import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
LAYERS = load_layer_config(REPO / 'params' / 'layers.yaml')


def model(objective: str = 'class_groups', batch_size: int = 8):
    return load_model_config({
        'name': 'stream', 'dataset': 'mnist', 'supervised': True,
        'layer_defaults': {'objective': objective, 'lr': 0.01},
        'training': {'batch_size': batch_size, 'seed': 3},
        'layers': [[-1, 'FFDense', [20]], [-1, 'FFDense', [20]]]}, LAYERS)


def data(n: int = 40):
    gen = torch.Generator().manual_seed(0)
    return torch.randn(n, 784, generator=gen), torch.randint(0, 10, (n,), generator=gen)


def test_a_stream_without_replay_learns_exactly_what_offline_batches_do():
    cfg = model()
    x, y = data(40)
    streamed, offline = FFNetwork.from_model_config(cfg), FFNetwork.from_model_config(cfg)
    learner = StreamLearner(cfg, streamed, (1, 28, 28))
    trained = [learner.add(x[i:i + 1], int(y[i])) for i in range(len(x))]
    assert sum(t is not None for t in trained) == 5 and learner.batches_trained == 5
    for start in range(0, 40, 8):
        offline.train_batch_classes(x[start:start + 8], y[start:start + 8])
    for a, b in zip(streamed.parameters(), offline.parameters()):
        assert torch.equal(a, b)


def test_a_partial_batch_waits_and_flush_trains_it():
    cfg = model()
    x, y = data(11)
    learner = StreamLearner(cfg, FFNetwork.from_model_config(cfg), (1, 28, 28))
    for i in range(11):
        learner.add(x[i:i + 1], int(y[i]))
    assert (learner.batches_trained, learner.pending) == (1, 3)
    assert learner.flush() is not None and learner.pending == 0
    learner.add(x[:1], int(y[0]))
    assert learner.flush() is None and learner.pending == 1  # one image: no batch yet


def test_replay_adds_earlier_images_and_the_buffer_stays_bounded():
    buffer = ReplayBuffer(5)
    x, y = data(12)
    buffer.add(x, y)
    assert buffer.size == 5
    got_x, got_y = buffer.sample(3, torch.Generator().manual_seed(0))
    kept = {tuple(row[:3].tolist()) for row in x[7:]}  # the last five stay
    assert all(tuple(row[:3].tolist()) in kept for row in got_x) and len(got_y) == 3
    cfg = model()
    learner = StreamLearner(cfg, FFNetwork.from_model_config(cfg), (1, 28, 28),
                            replay_capacity=16, replay_per_batch=4)
    for i in range(12):
        learner.add(x[i:i + 1], int(y[i]))
    assert learner.replay.size == 8 and learner.batches_trained == 1


def test_label_overlay_models_learn_from_a_stream_too():
    cfg = model('pos_neg')
    x, y = data(16)
    learner = StreamLearner(cfg, FFNetwork.from_model_config(cfg), (1, 28, 28))
    results = [learner.add(x[i:i + 1], int(y[i])) for i in range(16)]
    assert results[7] is not None and results[15] is not None


def test_bad_labels_and_unsupervised_models_are_refused():
    cfg = model()
    learner = StreamLearner(cfg, FFNetwork.from_model_config(cfg), (1, 28, 28))
    with pytest.raises(ValueError, match='label 10 is outside 0 .. 9'):
        learner.add(torch.zeros(1, 784), 10)
    unsupervised = load_model_config({
        'name': 'u', 'dataset': 'mnist', 'supervised': False,
        'head': {'epochs': 1}, 'layers': [[-1, 'FFDense', [20]]]}, LAYERS)
    with pytest.raises(ValueError, match='needs a supervised model'):
        StreamLearner(unsupervised, FFNetwork.from_model_config(unsupervised), (1, 28, 28))
