"""One evaluation path for the single process and for the master.

Both supply "label scores of x" or "features of x", and core.evaluation does the rest
(samples, seeded head, train sample).
"""
from __future__ import annotations

from pathlib import Path

from dff_lifecycle.core.config import load_layer_config, load_model_config
from dff_lifecycle.core.data.datasets import Dataset
from dff_lifecycle.core.ff.network import FFNetwork
from dff_lifecycle.core.run import evaluation
from dff_lifecycle.core.run.evaluation import (evaluate, features_from_activities,
                                               scores_from_activities)
from dff_lifecycle.core.run.metrics import epoch_means, record
import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
LAYERS = load_layer_config(REPO / 'params' / 'layers.yaml')


def supervised_model(**training):
    return load_model_config({
        'name': 'm', 'dataset': 'mnist', 'supervised': True, 'goodness_layers': [0, 1],
        'training': {'batch_size': 10, 'epochs': 1, 'eval_batch_size': 7, **training},
        'layers': [[-1, 'FFDense', [16]], [-1, 'FFDense', [8]]]}, LAYERS)


def unsupervised_model(**head):
    return load_model_config({
        'name': 'u', 'dataset': 'mnist', 'supervised': False, 'feature_layers': [0, 1],
        'head': {'hidden': 0, 'epochs': 2, 'lr': 0.01, 'batch_size': 8, **head},
        'training': {'batch_size': 10, 'epochs': 1, 'eval_batch_size': 7},
        'layers': [[-1, 'FFDense', [16]], [-1, 'FFDense', [8]]]}, LAYERS)


def dataset(n_train=30, n_test=12) -> Dataset:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(n_train + n_test, 784, generator=gen)
    y = torch.arange(n_train + n_test) % 10
    return Dataset('mnist', x[:n_train], y[:n_train], x[n_train:], y[n_train:], (1, 28, 28), 10)


def test_supervised_evaluation_asks_for_scores_of_the_test_set_then_a_train_sample():
    data = dataset()
    calls = []

    def perfect(x: torch.Tensor, split: str) -> torch.Tensor:
        calls.append((split, len(x)))
        labels = data.y_test if split == 'test' else data.y_train[:len(x)]
        return torch.nn.functional.one_hot(labels, 10).float()

    result = evaluate(supervised_model(train_eval_limit=20), data, label_scores_fn=perfect)
    assert calls == [('test', 12), ('train', 20)]
    assert (result.test_accuracy, result.train_accuracy, result.train_accuracy_samples) == \
        (1.0, 1.0, 20)


def test_limits_of_the_config_bound_what_is_evaluated():
    data = dataset()
    sizes = []
    evaluate(supervised_model(train_limit=9, test_limit=5), data,
             label_scores_fn=lambda x, split: sizes.append((split, len(x))) or
             torch.zeros(len(x), 10))
    assert sizes == [('test', 5), ('train', 9)]


def test_the_master_and_the_single_process_get_the_same_figures_from_the_same_network():
    model, data = supervised_model(), dataset()
    network = FFNetwork.from_model_config(model, 'cpu')
    local = evaluate(model, data, label_scores_fn=scores_from_activities(network.activities,
                                                                         model))

    # The master's way: per-layer goodness of every candidate overlay, as layer nodes report it.
    from dff_lifecycle.core.stage.batches import inference_inputs
    from dff_lifecycle.core.ff.scoring import label_scores

    def remote(x: torch.Tensor, _split: str) -> torch.Tensor:
        activities = network.activities(inference_inputs(x, model))
        goodness = [network.trainers[i].goodness_of(activities[i]) for i in model.goodness_layers]
        return label_scores(goodness, model.num_classes)

    assert evaluate(model, data, label_scores_fn=remote) == local


def test_unsupervised_evaluation_trains_the_seeded_head_on_train_features():
    model, data = unsupervised_model(), dataset()
    network = FFNetwork.from_model_config(model, 'cpu')
    features = features_from_activities(network.activities, model)
    seen = []

    def recorded(x: torch.Tensor, split: str) -> torch.Tensor:
        seen.append(split)
        return features(x, split)

    first = evaluate(model, data, features_fn=recorded)
    assert seen == ['train', 'test']
    assert evaluate(model, data, features_fn=features) == first  # the head is seeded
    assert 0.0 <= first.test_accuracy <= 1.0


def test_a_standardising_head_sees_test_features_scaled_by_the_training_statistics(monkeypatch):
    model, data = unsupervised_model(standardise=True), dataset()
    train_features = torch.rand(30, 5) * 4 + 2
    test_features = torch.rand(12, 5)
    seen = {}

    def fake_train_head(features, labels, num_classes, cfg, generator, device):
        seen['train'] = features
        head = torch.nn.Linear(5, 10)
        original = head.forward
        head.forward = lambda x: (seen.setdefault('predicted', []).append(x), original(x))[1]
        return head

    monkeypatch.setattr(evaluation, 'train_head', fake_train_head)

    def features(x: torch.Tensor, split: str) -> torch.Tensor:
        return train_features if split == 'train' else test_features

    evaluate(model, data, features_fn=features)
    mean, std = train_features.mean(0), train_features.std(0)
    assert torch.allclose(seen['train'], (train_features - mean) / std, atol=1e-5)
    predicted = torch.cat(seen['predicted'])[:len(test_features)]  # the test set comes first
    assert torch.allclose(predicted, (test_features - mean) / std, atol=1e-5)


def test_the_function_a_model_needs_must_be_given():
    with pytest.raises(ValueError, match='label scores'):
        evaluate(supervised_model(), dataset())
    with pytest.raises(ValueError, match='features'):
        evaluate(unsupervised_model(), dataset())


def test_epoch_means_are_per_layer_and_per_epoch_in_the_single_process_record_format():
    history = epoch_means({1: [(0, (1.0, 2.0, 3.0)), (0, (3.0, 4.0, 5.0)), (1, (0.5, 1, 1))],
                           0: [(0, (2.0, 2.0, 2.0))]})
    assert history == [record(0, 'epoch', 1, 2.0, 2.0, 2.0), record(1, 'epoch', 1, 2.0, 3.0, 4.0),
                       record(1, 'epoch', 2, 0.5, 1.0, 1.0)]


def test_a_train_eval_limit_of_zero_skips_the_train_pass():
    calls = []
    result = evaluate(supervised_model(train_eval_limit=0), dataset(),
                      label_scores_fn=lambda x, split: calls.append(split) or
                      torch.zeros(len(x), 10))
    assert calls == ['test']
    assert result.train_accuracy_samples == 0 and result.train_text() == \
        'train accuracy not measured'
