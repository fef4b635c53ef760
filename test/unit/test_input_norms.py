"""The input normalisations: their maths, and BatchNorm's statistics in the weight file."""
from __future__ import annotations

from dff_lifecycle.core.ff.input_norms import build_input_norm, INPUT_NORMS
from dff_lifecycle.core.ff.layers import build_layer, build_row
from dff_lifecycle.core.ff.local_trainer import LocalTrainer
from dff_lifecycle.core.hyperparams import FFHyperParams
import pytest
import torch

X = torch.randn(6, 3, 4, 4, generator=torch.Generator().manual_seed(0)) * 3 + 1


def test_the_registry_is_what_the_hyperparameters_offer():
    from dff_lifecycle.core.hyperparams import INPUT_NORMS as CHOICES
    assert set(CHOICES) == set(INPUT_NORMS) | {'auto'}
    with pytest.raises(ValueError, match="unknown input_norm 'group'"):
        build_input_norm('group', (3, 4, 4))


def test_length_position_sample_and_layer_norms():
    flat = X.flatten(1)
    assert torch.allclose(build_input_norm('length', (48,))(flat).norm(dim=1), torch.ones(6))
    per_position = build_input_norm('position', (3, 4, 4))(X)
    assert torch.allclose(per_position.square().mean(dim=1), torch.ones(6, 4, 4), atol=1e-5)
    per_sample = build_input_norm('sample', (3, 4, 4))(X)
    assert torch.allclose(per_sample.flatten(1).square().mean(dim=1), torch.ones(6), atol=1e-5)
    assert torch.allclose(per_sample / X, (per_sample / X)[:, :1, :1, :1].expand_as(X))
    layer = build_input_norm('layer', (3, 4, 4))(X).flatten(1)
    assert torch.allclose(layer.mean(dim=1), torch.zeros(6), atol=1e-5)
    assert torch.allclose(layer.var(dim=1, unbiased=False), torch.ones(6), atol=1e-3)


def test_batch_norm_learns_running_statistics_that_the_weight_file_restores():
    hparams = FFHyperParams(input_norm='batch', lr=0.01)
    layer, _ = build_row('FFConv2d', [(3, 4, 4)], [4, 3, 1, 1], 0)
    trainer = LocalTrainer(layer, hparams)
    assert trainer.layer.input_norm == 'batch'
    for _ in range(5):
        trainer.step(X, X.flip(0))
    stats = trainer.layer.norm.running_mean.clone()
    assert not torch.allclose(stats, torch.zeros(3))  # moved towards the data's mean of 1
    state = trainer.state_dict()
    assert 'norm.running_mean' in state['layer']
    fresh_layer, _ = build_row('FFConv2d', [(3, 4, 4)], [4, 3, 1, 1], 0)
    fresh = LocalTrainer(fresh_layer, hparams)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.layer.norm.running_mean, stats)
    assert torch.equal(fresh.infer(X[:2]), trainer.infer(X[:2]))  # inference: running stats


def test_auto_keeps_each_layers_former_normalisation():
    dense, _ = build_layer('FFDense', 48, [10], 0)
    conv, _ = build_row('FFConv2d', [(3, 4, 4)], [10, 3], 0)
    assert LocalTrainer(dense, FFHyperParams()).layer.input_norm == 'length'
    assert LocalTrainer(conv, FFHyperParams()).layer.input_norm == 'position'
    classes = FFHyperParams(objective='class_groups', groups=10)
    conv2, _ = build_row('FFConv2d', [(3, 4, 4)], [10, 3], 0)
    assert LocalTrainer(conv2, classes).layer.input_norm == 'sample'
