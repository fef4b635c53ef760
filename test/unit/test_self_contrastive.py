"""SCFF-style self-contrastive negatives: pairs of images stacked along the channels."""
from __future__ import annotations

from pathlib import Path

from dff_lifecycle.core.config import ConfigError, load_layer_config, load_model_config
from dff_lifecycle.core.data.datasets import Dataset
from dff_lifecycle.core.ff.negatives import self_contrastive_pairs
from dff_lifecycle.core.run.experiment import run_single_process
from dff_lifecycle.core.stage.batches import inference_inputs, make_batch
import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
LAYERS = load_layer_config(REPO / 'params' / 'layers.yaml')
HEAD = {'hidden': 0, 'epochs': 2, 'lr': 0.01, 'batch_size': 20}


def config(**extra):
    data = {'name': 'scff', 'dataset': 'mnist', 'supervised': False, 'input_shape': [1, 28, 28],
            'head': HEAD, 'training': {'batch_size': 20, 'epochs': 1,
                                       'negatives': 'self_contrastive', 'train_eval_limit': 0},
            'layers': [[-1, 'FFConv2d', [4, 5, 1, 2]], [-1, 'MaxPool2d', [4]]], **extra}
    return load_model_config(data, LAYERS)


def test_a_positive_stacks_an_image_with_itself_and_a_negative_with_another():
    images = torch.rand(5, 1, 3, 3, generator=torch.Generator().manual_seed(0))
    pos, neg = self_contrastive_pairs(images, torch.Generator().manual_seed(1))
    assert pos.shape == neg.shape == (5, 2, 3, 3)
    assert torch.equal(pos[:, :1], images) and torch.equal(pos[:, 1:], images)
    assert torch.equal(neg[:, :1], images)
    for i in range(5):
        assert not torch.equal(neg[i, 1:], images[i])  # never itself
        assert any(torch.equal(neg[i, 1:], other) for other in images)


def test_the_layers_read_image_pairs_and_the_config_round_trips():
    cfg = config()
    assert cfg.input_shape == (2, 28, 28) and cfg.image_shape == (1, 28, 28)
    assert cfg.layers[0].in_shape == (2, 28, 28)
    assert load_model_config(cfg.to_dict(), LAYERS).input_shape == (2, 28, 28)
    x = torch.rand(3, 784)
    stacked = inference_inputs(x, cfg)
    assert stacked.shape == (3, 2, 28, 28) and torch.equal(stacked[:, 0], stacked[:, 1])


def test_self_contrastive_needs_an_unsupervised_model_with_an_image_input():
    with pytest.raises(ConfigError, match='supervised: false'):
        config(supervised=True, head=None)
    with pytest.raises(ConfigError, match='input_shape: .*image shape'):
        config(input_shape=[784], layers=[[-1, 'FFDense', [10]]])


def test_a_self_contrastive_model_trains_and_is_evaluated_by_its_head():
    gen = torch.Generator().manual_seed(0)
    data = Dataset('mnist', torch.rand(60, 784, generator=gen),
                   torch.randint(0, 10, (60,), generator=gen), torch.rand(20, 784, generator=gen),
                   torch.randint(0, 10, (20,), generator=gen), (1, 28, 28), 10)
    cfg = config()
    batch = make_batch(0, 0, data.x_train[:20], data.y_train[:20], data, cfg,
                       torch.Generator().manual_seed(0))
    assert batch.x_pos.shape == (20, 2, 28, 28)
    metrics = run_single_process(cfg, data, 'cpu', progress=False, log=lambda _t: None)
    assert 0.0 <= metrics['test_accuracy'] <= 1.0
