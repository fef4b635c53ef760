"""A layer node's stage parameters: port bindings, shapes, post-ops; and joining inputs."""
from dff_lifecycle.common.ports import decode_bindings, PortBinding, positions
from dff_lifecycle.core.ff.layers import build_row
from dff_lifecycle.core.ff.local_trainer import LocalTrainer
from dff_lifecycle.core.hyperparams import FFHyperParams
from dff_lifecycle.core.stage.batch_codec import Kind, pack_pair
from dff_lifecycle.core.stage.layer_stage import InputRejected, LayerStage, StageSettings
from dff_lifecycle.nodes.parameters import LAYER_PARAMETERS
from dff_lifecycle.nodes.stage_wiring import StageWiring
import pytest
import torch

T = 'dff_msgs/msg/TensorChunk'
S = 'dff_msgs/msg/LayerStatus'


def params(**extra):
    values = {name: p.default for name, p in LAYER_PARAMETERS.items()}
    values.update({'model': 'm', 'layer_index': 2, 'layer_type': 'FFConv2d', 'in_features': 96,
                   'out_features': 4 * 16, 'in_shape': '6,4,4', 'layer_args': '4,3,1,1',
                   'input_shapes': ['2,4,4', '4,4,4'], 'post_ops': ['MaxPool2d 2'],
                   'inputs': [f'train /m/a/train_out {T}', f'train /m/b/train_out {T}',
                              f'infer /m/a/infer_out {T}', f'infer /m/b/infer_out {T}'],
                   'outputs': [f'status /m/layer_2/status {S}']})
    values.update(extra)
    return values


def test_bindings_decode_and_give_each_input_its_join_position():
    wiring = StageWiring.from_parameters(params())
    assert [b.port for b in wiring.inputs] == ['train', 'train', 'infer', 'infer']
    assert wiring.positions == (0, 1, 0, 1)
    assert wiring.output_topic('status') == '/m/layer_2/status'
    assert wiring.output_topic('train') == ''
    assert wiring.parameter_count == 4 * 6 * 9 + 4
    assert wiring.ops().post(torch.zeros(3, 4, 4, 4)).shape == (3, 4, 2, 2)
    assert positions([PortBinding('a', '/x', T)] * 3) == [0, 1, 2]


@pytest.mark.parametrize('change, message', [
    ({'inputs': [f'train /m/a/train_out {T}']}, "port 'train' is bound 1 time"),
    ({'inputs': [f'weights /m/a {T}']}, "no input port 'weights'"),
    ({'inputs': [f'train m/a {T}']}, 'expected "<port> </absolute/topic>'),
    ({'outputs': [f'status /m/s {T}']}, 'carries dff_msgs/msg/LayerStatus'),
    ({'outputs': ['']}, 'status port must be bound'),
    ({'post_ops': ['FFDense 3']}, 'only pools and Flatten'),
    ({'post_ops': ['MaxPool2d two']}, 'expected "<Type> <int args...>"'),
    ({'in_shape': '6,x,4'}, 'in_shape must be comma-separated'),
    ({'layer_type': 'Flatten'}, 'trains nothing'),
])
def test_bad_stage_parameters_are_refused_in_one_line(change, message):
    with pytest.raises(ValueError, match=message):
        StageWiring.from_parameters(params(**change))


def test_empty_entries_mean_none():
    assert decode_bindings(['', ' '], 'inputs') == []


def stage_joining_two(seed=0):
    layer, _ = build_row('FFConv2d', [(6, 4, 4)], [4, 3, 1, 1], seed)
    wiring = StageWiring.from_parameters(params())
    trainer = LocalTrainer(layer, FFHyperParams(lr=0.01))
    return LayerStage(trainer, StageSettings(in_features=96), ops=wiring.ops())


def test_a_joining_stage_trains_once_both_inputs_of_a_batch_arrived():
    stage = stage_joining_two()
    a = pack_pair(torch.rand(5, 2, 4, 4), torch.rand(5, 2, 4, 4))
    b = pack_pair(torch.rand(5, 4, 4, 4), torch.rand(5, 4, 4, 4))
    assert stage.process('s', 0, Kind.TRAIN_PAIR, b, position=1) == []
    assert stage.trainer.batches_seen == 0
    (out,) = stage.process('s', 0, Kind.TRAIN_PAIR, a, position=0)
    assert stage.trainer.batches_seen == 1 and out.tensor.shape == (10, 4, 2, 2)
    # The single process joins the same way: same weights after the same step.
    twin = stage_joining_two()
    twin.trainer.step(torch.cat([a[:5], b[:5]], 1), torch.cat([a[5:], b[5:]], 1))
    assert torch.equal(twin.trainer.layer.weight, stage.trainer.layer.weight)


def test_a_joining_stage_refuses_a_misshapen_input_and_overlay_kinds():
    stage = stage_joining_two()
    with pytest.raises(InputRejected, match='does not fit'):
        stage.process('s', 0, Kind.TRAIN_PAIR, torch.rand(10, 3, 4, 4), position=0)
    with pytest.raises(InputRejected, match='takes activity pairs'):
        stage.process('s', 0, Kind.TRAIN_LABELLED, torch.rand(10, 98), position=0)
