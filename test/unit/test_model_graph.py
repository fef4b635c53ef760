"""Rows grouped into stages: fused pools and Concat, shapes through the plan, refused wirings."""
import copy
from pathlib import Path

from dff_lifecycle.core.config import ConfigError, load_layer_config, load_model_config
from dff_lifecycle.core.ff.network import FFNetwork
from dff_lifecycle.core.stage.model_graph import MODEL_INPUT
import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
LAYER_TYPES = load_layer_config(REPO / 'params' / 'layers.yaml')
HEAD = {'hidden': 0, 'epochs': 1, 'lr': 0.001, 'batch_size': 32, 'weight_decay': 0.0}


def model(layers, supervised=False, **extra):
    data = {'name': 'graph_test', 'dataset': 'mnist', 'supervised': supervised,
            'input_shape': [1, 28, 28], 'head': None if supervised else HEAD,
            'training': {'batch_size': 8, 'epochs': 1, 'seed': 0}, 'layers': layers, **extra}
    return load_model_config(copy.deepcopy(data), LAYER_TYPES)


CHAIN = [[-1, 'FFConv2d', [4, 5, 1, 2]], [-1, 'MaxPool2d', [2]],
         [-1, 'FFConv2d', [6, 3, 1, 1]], [-1, 'AvgPool2d', [2, 2]], [-1, 'Flatten', []],
         [-1, 'FFDense', [10]]]
SKIP = [[-1, 'FFConv2d', [4, 3, 1, 1]], [-1, 'FFConv2d', [2, 3, 1, 1]],
        [[-1, 0], 'Concat', [1]], [-1, 'FFConv2d', [3, 3, 1, 1]], [-1, 'MaxPool2d', [4]]]


def test_pools_and_flatten_fuse_after_the_layer_they_follow():
    cfg = model(CHAIN)
    assert [s.index for s in cfg.stages] == [0, 2, 5]
    first, second, third = cfg.stages
    assert first.inputs == (MODEL_INPUT,) and first.raw_shape == (4, 28, 28)
    assert [op.index for op in first.post_ops] == [1] and first.out_shape == (4, 14, 14)
    assert second.in_shape == (4, 14, 14) and second.output_row == 4
    assert second.out_shape == (6 * 7 * 7,)
    assert third.inputs == (2,) and third.in_shape == (294,) and third.out_shape == (10,)
    assert cfg.goodness_layers == (0, 2, 5) and cfg.feature_layers == (0, 2, 5)
    assert [r.index for r in cfg.trainable_layers] == [0, 2, 5]


def test_a_concat_fuses_into_its_reader_which_gets_one_input_per_joined_stage():
    cfg = model(SKIP)
    assert [s.index for s in cfg.stages] == [0, 1, 3]
    joined = cfg.stage(3)
    assert joined.inputs == (1, 0) and joined.concat_dim == 1
    assert joined.input_shapes == ((2, 28, 28), (4, 28, 28)) and joined.in_shape == (6, 28, 28)
    assert joined.out_shape == (3, 7, 7)


def test_the_config_round_trips_with_list_froms():
    cfg = model(SKIP)
    again = load_model_config(cfg.to_dict(), LAYER_TYPES)
    assert again == cfg and again.to_dict()['layers'][2][0] == [-1, 0]


@pytest.mark.parametrize('layers, key, message', [
    ([[-1, 'MaxPool2d', [2]], [-1, 'FFDense', [10]]], 'layers[0]',
     'runs fused after a trainable layer'),
    ([[-1, 'FFConv2d', [4, 3]], [-1, 'MaxPool2d', [2]], [0, 'FFConv2d', [4, 3]]], 'layers[2]',
     'the middle of the stage of layer 0'),
    ([[-1, 'FFConv2d', [4, 3]], [-1, 'MaxPool2d', [2]], [0, 'AvgPool2d', [2]]], 'layers[2]',
     'already continues at row 1'),
    ([[-1, 'FFConv2d', [4, 3]], [-1, 'FFConv2d', [4, 3]], [[-1, 0], 'Concat', [1]]],
     'layers[2].args', 'must match except along dim 1'),
    ([[-1, 'FFConv2d', [4, 3, 1, 1]], [-1, 'FFConv2d', [4, 3, 1, 1]],
      [[-1, 0], 'Concat', [1]], [-1, 'Flatten', []]], 'layers[3]',
     'nothing reads this Flatten'),
    ([[-1, 'FFConv2d', [4, 3, 1, 1]], [-1, 'FFConv2d', [4, 3, 1, 1]],
      [[-1, 0], 'Concat', [1]], [-1, 'MaxPool2d', [64]], [-1, 'FFDense', [3]]],
     'layers[3].args', 'does not fit'),
    ([[-1, 'FFConv2d', [4, 3, 1, 1]], [[-1, 0], 'FFDense', [3]]], 'layers[1].from',
     'only a Concat reads several rows'),
    ([[-1, 'FFConv2d', [4, 3, 1, 1]], [[0, 0], 'Concat', [1]], [-1, 'FFDense', [3]]],
     'layers[1].from', 'names a row twice'),
    ([[-1, 'FFConv2d', [4, 3, 1, 1]], [-1, 'FFConv2d', [4, 3, 1, 1]],
      [[-1, 0], 'Concat', [1]]], 'layers[2]', 'nothing reads this Concat'),
    ([[-1, 'FFConv2d', [4, 3, 1, 1, {'lr': -1}]]], 'layers[0].args[4].lr', 'lr must be > 0'),
])
def test_wirings_that_cannot_be_fused_are_refused_naming_the_row(layers, key, message):
    with pytest.raises(ConfigError) as caught:
        model(layers)
    assert caught.value.key == key and message in caught.value.problem


def test_goodness_and_feature_layers_must_name_trainable_rows():
    with pytest.raises(ConfigError) as caught:
        model(CHAIN, feature_layers=[1])
    assert caught.value.key == 'feature_layers[0]' and 'MaxPool2d' in caught.value.problem


def test_a_conv_model_on_flat_mnist_input_is_told_to_set_an_image_shape():
    with pytest.raises(ConfigError) as caught:
        model(CHAIN, input_shape=[784])
    assert caught.value.key == 'layers[0].args' and 'input_shape' in caught.value.problem


def test_a_type_marked_fused_in_the_layer_config_must_not_train():
    types = load_layer_config({'layer_types': {'FFConv2d': {'fused': 'after'}}})
    with pytest.raises(ConfigError, match='FFConv2d needs inputs and outputs'):
        load_model_config({'name': 'x', 'dataset': 'mnist', 'supervised': True,
                           'input_shape': [1, 28, 28], 'layers': [[-1, 'FFConv2d', [4, 3]]]},
                          types)


def test_the_network_trains_stages_and_exposes_every_row():
    cfg = model(SKIP)
    net = FFNetwork.from_model_config(cfg)
    assert len(net.trainers) == 3
    x = torch.randn(8, 784)
    results = net.train_batch(x, x.flip(0))
    assert len(results) == 3 and all(torch.isfinite(torch.tensor(r.loss)) for r in results)
    rows = net.activities(x)
    assert rows[2] is None  # the Concat runs fused inside layer 3
    assert rows[3].shape == (8, 3, 28, 28) and rows[4].shape == (8, 3, 7, 7)
    twin = FFNetwork.from_model_config(cfg)
    twin.train_batch(x, x.flip(0))
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(),
                                                 twin.state_dict().values()))


JOIN_TAIL = [[-1, 'FFConv2d', [4, 5, 1, 2]], [-1, 'MaxPool2d', [4]],
             [-1, 'FFConv2d', [6, 3, 1, 1]], [[-1, 1], 'Concat', [1]],
             [-1, 'MaxPool2d', [7]], [-1, 'Flatten', []], [-1, 'FFDense', [5]]]


def test_rows_after_a_concat_run_fused_before_the_layer_that_reads_them():
    cfg = model(JOIN_TAIL)
    tail = cfg.stage(6)
    assert tail.inputs == (2, 0) and tail.input_shapes == ((6, 7, 7), (4, 7, 7))
    assert [op.module for op in tail.pre_ops] == ['MaxPool2d', 'Flatten']
    assert tail.in_shape == (10,) and cfg.layers[6].in_features == 10
    network = FFNetwork.from_model_config(cfg)
    x = torch.randn(3, 784)
    rows = network.activities(x)
    pooled = torch.cat([rows[2], rows[1]], dim=1).amax(dim=(2, 3))
    expected = network.trainers[2].infer(pooled)
    assert torch.allclose(rows[6], expected)


def test_two_readers_of_one_concat_chain_each_fuse_it():
    layers = JOIN_TAIL + [[5, 'FFDense', [4]]]
    cfg = model(layers)
    assert [s.index for s in cfg.stages] == [0, 2, 6, 7]
    assert cfg.stage(7).inputs == (2, 0)
    assert [op.module for op in cfg.stage(7).pre_ops] == ['MaxPool2d', 'Flatten']
