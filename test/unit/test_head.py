"""Classifier head on frozen features."""
from dff_lifecycle.core.ff.head import (ClassifierHead, head_predict, HeadConfig, Standardiser,
                                        train_head)
from dff_lifecycle.core.ff.scoring import accuracy
import pytest
import torch


def _blobs(n_per_class: int = 50, noise_seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Three well separated Gaussian blobs in 10-D (fixed centres, seeded noise)."""
    centres = torch.randn(3, 10, generator=torch.Generator().manual_seed(123)) * 3
    labels = torch.arange(3).repeat_interleave(n_per_class)
    noise = torch.randn(len(labels), 10, generator=torch.Generator().manual_seed(noise_seed))
    return centres[labels] + noise, labels


@pytest.mark.parametrize('hidden', [0, 32])
def test_head_learns_separable_problem(hidden):
    features, labels = _blobs()
    cfg = HeadConfig(hidden=hidden, epochs=8, lr=1e-2, batch_size=30)
    head = train_head(features, labels, 3, cfg, torch.Generator().manual_seed(0), device='cpu')
    test_features, test_labels = _blobs(noise_seed=1)  # held-out samples
    assert accuracy(head_predict(head, test_features, batch_size=64), test_labels) > 0.9


def test_training_repeats_with_the_same_generator():
    features, labels = _blobs(20)
    cfg = HeadConfig(hidden=8, epochs=2, batch_size=16)
    rng_before = torch.get_rng_state()
    heads = [train_head(features, labels, 3, cfg, torch.Generator().manual_seed(5))
             for _ in range(2)]
    assert torch.equal(torch.get_rng_state(), rng_before), 'only the given generator is used'
    for a, b in zip(heads[0].parameters(), heads[1].parameters()):
        assert torch.equal(a, b)


def test_head_shapes_and_batched_prediction():
    assert len(ClassifierHead(6, 4, hidden=0).net) == 1
    head = ClassifierHead(6, 4, hidden=5, generator=torch.Generator().manual_seed(0))
    features = torch.randn(11, 6, generator=torch.Generator().manual_seed(1))
    assert head(features).shape == (11, 4)
    expected = head(features).argmax(dim=1)
    assert torch.equal(head_predict(head, features, batch_size=3), expected)
    assert head_predict(head, features[:0]).shape == (0,)


@pytest.mark.parametrize('field, value', [('hidden', -1), ('epochs', 0), ('batch_size', 0),
                                          ('lr', 0.0), ('weight_decay', -1.0),
                                          ('standardise', 1)])
def test_head_config_validation(field, value):
    with pytest.raises(ValueError, match=field):
        HeadConfig(**{field: value}).validate()


def test_train_head_checks_shapes():
    with pytest.raises(ValueError, match='labels'):
        train_head(torch.zeros(4, 3), torch.zeros(3, dtype=torch.long), 2, HeadConfig(),
                   torch.Generator())


def test_standardiser_centres_and_scales_with_training_statistics():
    gen = torch.Generator().manual_seed(0)
    train = torch.randn(500, 4, generator=gen) * torch.tensor([1e-2, 0.5, 2.0, 0.0]) + 3.0
    scale = Standardiser.fit(train, chunk=64)  # chunked sums equal the one-shot statistics
    scaled = scale(train)
    assert torch.allclose(scaled[:, :3].mean(0), torch.zeros(3), atol=1e-4)
    assert torch.allclose(scaled[:, :3].std(0), torch.ones(3), atol=1e-3)
    assert torch.equal(scaled[:, 3], torch.zeros(500))  # a constant feature is only centred
    test = torch.full((2, 4), 3.0)
    assert torch.allclose(scale(test), (test - train.mean(0)) / scale.std)  # train's statistics
    with pytest.raises(ValueError, match='standardising needs'):
        Standardiser.fit(torch.zeros(1, 4))
