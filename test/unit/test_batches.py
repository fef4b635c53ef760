"""Training batches: determinism, positive/negative construction, epochs, full-batch mode."""
import copy

from dff_lifecycle.core.config import load_layer_config, load_model_config
from dff_lifecycle.core.data.datasets import Dataset
from dff_lifecycle.core.stage.batches import (count_batches, inference_inputs, training_batches,
                                              training_epochs)
import pytest
import torch

MSG = 'dff_msgs/msg/TensorChunk'
PORTS = {'inputs': {'train': MSG}, 'outputs': {'train': MSG}}
LAYER_TYPES = load_layer_config({'layer_types': {'FFDense': PORTS}})
NUM_CLASSES = 10


def make_config(supervised=True, dataset='mnist', **training):
    data = {
        'name': 'batch_test', 'dataset': dataset, 'supervised': supervised,
        'training': {'batch_size': 16, 'epochs': 2, 'seed': 0, **training},
        'layers': [[-1, 'FFDense', [8]]],
    }
    if not supervised:
        data['head'] = {'hidden': 0, 'epochs': 1}
    return load_model_config(copy.deepcopy(data), LAYER_TYPES)


def flat_dataset(n=50):
    """MNIST-like: (N, 784), the last value of each row is its index so batches can be traced."""
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(n, 784, generator=gen)
    x[:, -1] = torch.arange(n, dtype=torch.float32)
    y = torch.arange(n) % NUM_CLASSES
    return Dataset('mnist', x, y, x[:10].clone(), y[:10].clone(), (1, 28, 28), NUM_CLASSES)


def image_dataset(n=12):
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(n, 3, 32, 32, generator=gen)
    y = torch.arange(n) % NUM_CLASSES
    return Dataset('cifar10', x, y, x[:4].clone(), y[:4].clone(), (3, 32, 32), NUM_CLASSES)


def collect(dataset, cfg, seed=0):
    return list(training_batches(dataset, cfg, torch.Generator().manual_seed(seed)))


@pytest.mark.parametrize('supervised', [True, False])
def test_same_seed_gives_identical_batches(supervised):
    dataset = flat_dataset() if supervised else image_dataset()
    cfg = make_config(supervised, 'mnist' if supervised else 'cifar10', batch_size=4)
    first, second = collect(dataset, cfg), collect(dataset, cfg)
    assert len(first) == len(second) > 1
    for a, b in zip(first, second):
        assert (a.seq, a.epoch) == (b.seq, b.epoch)
        assert torch.equal(a.x_pos, b.x_pos) and torch.equal(a.x_neg, b.x_neg)
    other = collect(dataset, cfg, seed=1)
    assert not all(torch.equal(a.x_neg, b.x_neg) for a, b in zip(first, other))


def test_epochs_shuffle_every_sample_once_and_drop_a_single_leftover():
    dataset = flat_dataset(n=49)  # 3 batches of 16 and a leftover of 1, which is dropped
    cfg = make_config(batch_size=16, epochs=3)
    batches = collect(dataset, cfg)
    assert len(batches) == count_batches(dataset, cfg) == 9
    assert [b.seq for b in batches] == list(range(9))
    assert [b.epoch for b in batches] == [0] * 3 + [1] * 3 + [2] * 3
    orders = []
    for epoch in range(3):
        seen = torch.cat([b.x_pos[:, -1] for b in batches if b.epoch == epoch]).long()
        assert len(seen) == 48 and len(set(seen.numpy())) == 48
        orders.append(seen)
    assert not torch.equal(orders[0], orders[1])  # reshuffled each epoch


def test_a_leftover_of_two_is_kept():
    dataset = flat_dataset(n=34)
    cfg = make_config(batch_size=16, epochs=1)
    assert [len(b.x_pos) for b in collect(dataset, cfg)] == [16, 16, 2]
    assert count_batches(dataset, cfg) == 3


def test_supervised_pairs_overlay_true_and_wrong_labels():
    dataset = flat_dataset()
    for batch in collect(dataset, make_config(batch_size=10, epochs=1)):
        index = batch.x_pos[:, -1].long()
        images, labels = dataset.x_train[index], dataset.y_train[index]
        hot = images.max()
        assert batch.x_pos.shape == batch.x_neg.shape == (10, 784)
        # Beyond the label pixels both halves are the untouched images.
        assert torch.equal(batch.x_pos[:, NUM_CLASSES:], images[:, NUM_CLASSES:])
        assert torch.equal(batch.x_neg[:, NUM_CLASSES:], images[:, NUM_CLASSES:])
        positive_label = batch.x_pos[:, :NUM_CLASSES].argmax(dim=1)
        negative_label = batch.x_neg[:, :NUM_CLASSES].argmax(dim=1)
        assert torch.equal(positive_label, labels)
        assert not (negative_label == labels).any()
        for half in (batch.x_pos, batch.x_neg):
            assert torch.equal(half[:, :NUM_CLASSES].sum(dim=1), torch.full((10,), float(hot)))


def test_permuted_negatives_carry_the_batch_labels_shuffled():
    dataset = flat_dataset()
    cfg = make_config(mode='full_batch', negatives='permuted')
    (batch,) = collect(dataset, cfg)
    positive_label = batch.x_pos[:, :NUM_CLASSES].argmax(dim=1)
    negative_label = batch.x_neg[:, :NUM_CLASSES].argmax(dim=1)
    assert torch.equal(positive_label.sort().values, negative_label.sort().values)
    assert not torch.equal(positive_label, negative_label)
    assert torch.equal(batch.x_neg, collect(dataset, cfg)[0].x_neg)


def test_unsupervised_pairs_real_and_hybrid_images():
    dataset = image_dataset()
    batches = collect(dataset, make_config(False, 'cifar10', batch_size=6, epochs=1))
    assert len(batches) == 2
    for batch in batches:
        assert batch.x_pos.shape == batch.x_neg.shape == (6, 3, 32, 32)
        # Every positive is a real training image.
        matches = (batch.x_pos.flatten(1)[:, None] == dataset.x_train.flatten(1)[None]).all(dim=2)
        assert matches.any(dim=1).all()
        # Each hybrid pixel comes from its own image or from another image of the same batch.
        from_self = batch.x_neg == batch.x_pos
        from_batch = (batch.x_neg[:, None] == batch.x_pos[None]).any(dim=1)
        assert from_batch.all() and not from_self.all()


def test_unsupervised_flat_images_are_reshaped_for_the_masks():
    dataset = flat_dataset(n=8)
    batch = collect(dataset, make_config(False, 'mnist', batch_size=8, epochs=1))[0]
    assert batch.x_pos.shape == batch.x_neg.shape == (8, 1, 28, 28)


def test_full_batch_mode_yields_one_batch_of_the_limited_training_set():
    dataset = flat_dataset(n=50)
    cfg = make_config(mode='full_batch', train_limit=30, epochs=5, batch_size=4)
    batches = collect(dataset, cfg)
    assert count_batches(dataset, cfg) == len(batches) == 1
    batch = batches[0]
    assert (batch.seq, batch.epoch) == (0, 0)
    assert batch.x_pos.shape == batch.x_neg.shape == (30, 784)
    # No shuffling: the first 30 samples in order.
    assert torch.equal(batch.x_pos[:, -1], torch.arange(30, dtype=torch.float32))


def test_train_limit_applies_in_minibatch_mode():
    dataset = flat_dataset(n=50)
    cfg = make_config(train_limit=20, batch_size=10, epochs=1)
    batches = collect(dataset, cfg)
    assert count_batches(dataset, cfg) == len(batches) == 2
    assert int(torch.cat([b.x_pos[:, -1] for b in batches]).max()) < 20


def test_inference_inputs():
    x = flat_dataset(n=3).x_train
    candidates = inference_inputs(x, make_config())
    assert candidates.shape == (3 * NUM_CLASSES, 784)
    overlaid = candidates[:, :NUM_CLASSES].argmax(dim=1)
    assert torch.equal(overlaid, torch.arange(NUM_CLASSES).repeat(3))
    images = image_dataset().x_train
    assert inference_inputs(images, make_config(False, 'cifar10')) is images


def test_hard_negatives_score_the_training_set_once_per_epoch_after_the_first():
    dataset = flat_dataset(40)
    cfg = make_config(batch_size=8, epochs=3, negatives='hard')
    calls = []

    def scorer(x):
        calls.append(x.clone())
        scores = torch.zeros(len(x), NUM_CLASSES)
        scores[:, 7] = 100.0  # every sample "looks like" a 7
        return scores

    epochs = training_epochs(dataset, cfg, torch.Generator().manual_seed(0), scorer)
    first = list(next(epochs))
    assert calls == []  # epoch 0 uses random wrong labels: the model knows nothing yet
    second = list(next(epochs))
    assert len(calls) == 1 and torch.equal(calls[0], dataset.x_train)
    assert [b.seq for b in first + second] == list(range(10))
    for batch in second:
        labels = batch.x_neg[:, :NUM_CLASSES].argmax(dim=1)
        truth = batch.x_pos[:, :NUM_CLASSES].argmax(dim=1)
        assert torch.equal(labels[truth != 7], torch.full_like(labels[truth != 7], 7))
        assert not bool((labels == truth).any())
    list(next(epochs))
    assert len(calls) == 2


def test_hard_negatives_without_a_scorer_are_refused():
    cfg = make_config(negatives='hard')
    with pytest.raises(ValueError, match='hard negatives need a label scorer'):
        collect(flat_dataset(), cfg)
