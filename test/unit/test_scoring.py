"""Goodness-based label scores, predictions and head features."""
from dff_lifecycle.core.ff.negatives import candidate_inputs
from dff_lifecycle.core.ff.scoring import (accuracy, label_scores, layer_goodness,
                                           normalised_features, predict_labels)
import pytest
import torch


def test_label_scores_sum_layers_sample_major():
    layer0 = torch.tensor([1.0, 5.0, 2.0, 0.0, 0.0, 9.0])  # N=2, C=3
    layer1 = torch.tensor([1.0, 1.0, 4.0, 3.0, 0.0, 0.0])
    scores = label_scores([layer0, layer1], num_classes=3)
    torch.testing.assert_close(scores, torch.tensor([[2.0, 6.0, 6.0], [3.0, 0.0, 9.0]]))
    assert torch.equal(predict_labels(scores), torch.tensor([1, 2]))


def test_label_scores_validate_shapes():
    with pytest.raises(ValueError, match='at least one'):
        label_scores([], 3)
    with pytest.raises(ValueError, match=r'N\*3'):
        label_scores([torch.ones(4)], 3)
    with pytest.raises(ValueError, match='same candidates'):
        label_scores([torch.ones(6), torch.ones(3)], 3)


def test_scores_of_candidates_recover_the_label_with_most_goodness():
    x = torch.zeros(4, 12)
    candidates = candidate_inputs(x + 1.0, 4)
    # A toy "layer" whose goodness is the value on pixel 2: label 2 wins for every sample.
    activity = candidates[:, 2:3]
    scores = label_scores(layer_goodness([activity], ['sum']), 4)
    assert torch.equal(predict_labels(scores), torch.full((4,), 2))


def test_layer_goodness_uses_each_reduction():
    h = torch.tensor([[1.0, 3.0]])
    mean, total = layer_goodness([h, h], ['mean', 'sum'])
    torch.testing.assert_close(mean, torch.tensor([5.0]))
    torch.testing.assert_close(total, torch.tensor([10.0]))
    with pytest.raises(ValueError, match='reductions'):
        layer_goodness([h], ['mean', 'sum'])


def test_normalised_features_are_unit_norm_per_layer():
    gen = torch.Generator().manual_seed(0)
    activities = [torch.rand(5, 7, generator=gen) * 10, torch.rand(5, 2, 3, generator=gen)]
    features = normalised_features(activities)
    assert features.shape == (5, 13)
    torch.testing.assert_close(features[:, :7].norm(dim=1), torch.ones(5))
    torch.testing.assert_close(features[:, 7:].norm(dim=1), torch.ones(5))
    with pytest.raises(ValueError, match='at least one'):
        normalised_features([])


def test_accuracy():
    assert accuracy(torch.tensor([1, 2, 3, 4]), torch.tensor([1, 2, 0, 0])) == 0.5
    with pytest.raises(ValueError, match='shapes'):
        accuracy(torch.tensor([1]), torch.tensor([1, 2]))
