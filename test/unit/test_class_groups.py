"""The class-group objective: its maths, its trainer, its wire kind, its stage and its config."""
from __future__ import annotations

import copy
from pathlib import Path

from dff_lifecycle.core.config import ConfigError, load_layer_config, load_model_config
from dff_lifecycle.core.ff.layers import build_layer, build_row
from dff_lifecycle.core.ff.local_trainer import LocalTrainer
from dff_lifecycle.core.ff.network import FFNetwork
from dff_lifecycle.core.hyperparams import FFHyperParams
from dff_lifecycle.core.objectives.class_groups import (class_group_loss, class_scores,
                                                        group_goodness,
                                                        true_and_other_goodness)
from dff_lifecycle.core.run.evaluation import supervised_scores
from dff_lifecycle.core.stage.batch_codec import CodecError, Kind, pack_classed, unpack_classed
from dff_lifecycle.core.stage.layer_stage import InputRejected, LayerStage, StageSettings
from dff_lifecycle.core.stage.stage_ops import StageOps
import pytest
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[2]
LAYER_TYPES = load_layer_config(REPO / 'params' / 'layers.yaml')
CLASSES = FFHyperParams(lr=0.01, objective='class_groups', groups=3)


# ------------------------------------------------------------------------------- maths

def test_group_goodness_is_the_mean_square_of_each_groups_channels_over_the_map():
    h = torch.arange(2 * 6 * 2 * 2, dtype=torch.float32).view(2, 6, 2, 2)
    g = group_goodness(h, 3)
    for b in range(2):
        for k in range(3):
            assert g[b, k] == pytest.approx(float(h[b, 2 * k:2 * k + 2].pow(2).mean()))
    assert torch.allclose(group_goodness(h, 3, 'sum'), g * 8)
    dense = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    assert torch.allclose(group_goodness(dense, 2), torch.tensor([[2.5, 12.5]]))


def test_channels_that_do_not_split_into_the_groups_are_refused():
    with pytest.raises(ValueError, match='do not split into 4 equal class groups'):
        group_goodness(torch.ones(2, 6, 3, 3), 4)


def test_the_loss_is_the_cross_entropy_of_the_groups_goodness():
    g, y = torch.tensor([[1.0, 2.0, 0.5], [0.1, 0.2, 3.0]]), torch.tensor([1, 2])
    assert class_group_loss(g, y) == pytest.approx(float(F.cross_entropy(g, y)))
    true, others = true_and_other_goodness(g, y)
    assert torch.allclose(true, torch.tensor([2.0, 3.0]))
    assert torch.allclose(others, torch.tensor([0.75, 0.15]))


def test_class_scores_add_each_layers_log_probabilities():
    a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 5.0]])
    expected = F.log_softmax(a, 1) + F.log_softmax(b, 1)
    assert torch.allclose(class_scores([a, b]), expected)
    with pytest.raises(ValueError, match='group goodness'):
        class_scores([a, torch.zeros(1, 3)])


# ----------------------------------------------------------------------------- trainer

def conv_trainer(seed=0):
    layer, _ = build_row('FFConv2d', [(1, 6, 6)], [6, 3, 1, 1], seed)
    return LocalTrainer(layer, CLASSES)


def test_a_class_groups_layer_learns_labels_from_where_they_show_in_the_image():
    # Class k lights up row k of the image: a conv layer must tell them apart everywhere.
    gen = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (60,), generator=gen)
    x = torch.rand(60, 1, 6, 6, generator=gen) * 0.1
    for i, label in enumerate(y):
        x[i, 0, 2 * label:2 * label + 2] += 1.0
    trainer = conv_trainer()
    first = trainer.step_classes(x, y)
    for _ in range(60):
        last = trainer.step_classes(x, y)
    assert last.loss < first.loss * 0.5
    assert last.goodness_pos > last.goodness_neg
    assert first.h_pos.shape == (60, 6, 6, 6) and first.h_neg.shape[0] == 0
    predicted = trainer.goodness_of(trainer.infer(x)).argmax(1)
    assert (predicted == y).float().mean() > 0.9
    assert trainer.layer.input_norm == 'sample'  # auto under class_groups


def test_a_class_groups_layer_refuses_negatives_and_bad_labels():
    trainer = conv_trainer()
    x = torch.rand(4, 36)
    with pytest.raises(ValueError, match='labelled batches'):
        trainer.step(x, x)
    with pytest.raises(ValueError, match='labels must be in 0..2'):
        trainer.step_classes(x, torch.tensor([0, 1, 2, 3]))
    layer, _ = build_layer('FFDense', 36, [8], 0)
    with pytest.raises(ValueError, match='8 channels do not split into 3'):
        LocalTrainer(layer, CLASSES)


# ------------------------------------------------------------------------- wire, stage

def test_classed_batches_round_trip_and_refuse_labels_out_of_range():
    x, y = torch.rand(5, 7), torch.tensor([0, 2, 1, 1, 0])
    back_x, back_y = unpack_classed(pack_classed(x, y), 3)
    assert torch.equal(back_x, x) and torch.equal(back_y, y)
    with pytest.raises(CodecError, match='0..2'):
        unpack_classed(pack_classed(x, torch.tensor([0, 1, 2, 3, 0])), 3)


def test_a_stage_trains_a_classed_batch_once_and_forwards_the_same_activities_again():
    stage = LayerStage(conv_trainer(), StageSettings(in_features=36,
                                                     resend_cache_bytes=1 << 20))
    x, y = torch.rand(4, 36), torch.tensor([0, 1, 2, 0])
    out, = stage.process('train', 0, Kind.TRAIN_CLASSED, pack_classed(x, y))
    assert out.kind == Kind.TRAIN_CLASSED and out.tensor.shape == (4, 6 * 36 + 1)
    assert torch.equal(out.tensor[:, -1].long(), y)
    again, = stage.process('train', 0, Kind.TRAIN_CLASSED, pack_classed(x, y))
    assert torch.equal(again.tensor, out.tensor) and stage.trainer.batches_seen == 1
    goodness, = [o for o in stage.process('infer', 0, Kind.INFERENCE, x)
                 if o.channel == 'result'] or [None]
    assert goodness is None  # report_goodness is off here


def test_a_stage_joins_classed_inputs_and_refuses_them_where_layers_learn_pos_neg():
    layer, _ = build_layer('FFDense', 10, [6], 0)
    trainer = LocalTrainer(layer, CLASSES)
    stage = LayerStage(trainer, StageSettings(in_features=10),
                       ops=StageOps([(4,), (6,)], 1, []))
    y = torch.tensor([2, 0])
    assert stage.process('t', 3, Kind.TRAIN_CLASSED, pack_classed(torch.rand(2, 4), y)) == []
    out, = stage.process('t', 3, Kind.TRAIN_CLASSED, pack_classed(torch.rand(2, 6), y), 1)
    assert out.tensor.shape == (2, 7) and trainer.batches_seen == 1
    plain, _ = build_layer('FFDense', 10, [6], 0)
    pos_neg = LayerStage(LocalTrainer(plain, FFHyperParams()), StageSettings(in_features=10))
    with pytest.raises(InputRejected, match='class_groups objective only'):
        pos_neg.process('t', 0, Kind.TRAIN_CLASSED, pack_classed(torch.rand(2, 10), y))


# ------------------------------------------------------------------------------ config

CONV = [[-1, 'FFConv2d', [10, 5, 1, 2]], [-1, 'MaxPool2d', [4]], [-1, 'Flatten', []],
        [-1, 'FFDense', [20]]]


def model(layers=CONV, **extra):
    data = {'name': 'classes_test', 'dataset': 'mnist', 'supervised': True,
            'input_shape': [1, 28, 28], 'training': {'batch_size': 8, 'epochs': 1, 'seed': 0},
            'layers': layers, **extra}
    return load_model_config(copy.deepcopy(data), LAYER_TYPES)


def test_a_supervised_conv_model_that_names_nothing_learns_by_class_groups():
    cfg = model()
    assert cfg.objective == 'class_groups' and not cfg.overlays_labels
    assert all(r.hparams.groups == 10 for r in cfg.trainable_layers)
    assert cfg.goodness_layers == (3,)  # the last layer's class logits
    dense = model([[-1, 'FFDense', [20]]])
    assert dense.objective == 'pos_neg' and dense.overlays_labels


@pytest.mark.parametrize('extra, key, message', [
    ({'layer_defaults': {'objective': 'pos_neg'}}, 'layers[0]', 'objective: class_groups'),
    ({'layer_defaults': {'objective': 'class_groups', 'groups': 4}}, 'layer_defaults.groups',
     'set from the model'),
    ({'layer_defaults': {'objective': 'guess'}}, 'layer_defaults.objective', 'one of'),
    ({'layer_defaults': {'input_norm': 'group'}}, 'layer_defaults.input_norm', 'one of'),
    ({'training': {'mode': 'full_batch', 'seed': 0}}, 'training.mode', 'minibatch'),
    ({'training': {'negatives': 'hard', 'seed': 0}}, 'training.negatives', 'no negatives'),
])
def test_objective_settings_that_cannot_work_are_refused_naming_the_key(extra, key, message):
    with pytest.raises(ConfigError) as caught:
        model(**extra)
    assert f': {key}: ' in str(caught.value) and message in str(caught.value)
    assert '\n' not in str(caught.value)


def test_layers_whose_width_does_not_split_into_the_classes_are_refused_naming_the_row():
    with pytest.raises(ConfigError, match=r'layers\[0\].args: .*12 out_channels .*multiple '
                                          r'of 10'):
        model([[-1, 'FFConv2d', [12, 5, 1, 2]]])
    with pytest.raises(ConfigError, match=r'layers\[3\].args: .*one objective'):
        model(CONV[:3] + [[-1, 'FFDense', [20, {'objective': 'pos_neg'}]]])
    with pytest.raises(ConfigError, match='needs supervised: true'):
        model(supervised=False, head={'hidden': 0, 'epochs': 1, 'lr': 0.01, 'batch_size': 8},
              layer_defaults={'objective': 'class_groups'})


def test_evaluation_takes_one_pass_per_image_not_one_per_label():
    cfg = model()
    network = FFNetwork.from_model_config(cfg)
    rows = []

    def activities(x):
        rows.append(len(x))
        return network.activities(x)

    scores = supervised_scores(activities, torch.rand(12, 784), cfg)
    assert scores.shape == (12, 10) and sum(rows) == 12
