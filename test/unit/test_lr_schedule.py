"""The cosine learning-rate schedule: its maths, its horizon from the run, and resumption."""
import copy
import math
from pathlib import Path

from dff_lifecycle.core.config import ConfigError, load_layer_config, load_model_config
from dff_lifecycle.core.ff.layers import FFDense
from dff_lifecycle.core.ff.local_trainer import LocalTrainer
from dff_lifecycle.core.hyperparams import FFHyperParams
import pytest
import torch

LAYERS = load_layer_config(Path(__file__).resolve().parents[2] / 'params' / 'layers.yaml')


def _cosine(**kw) -> FFHyperParams:
    return FFHyperParams(lr=0.01, lr_schedule='cosine', **kw).validate()


def test_cosine_falls_from_lr_to_its_final_fraction_and_stays_there():
    hp = _cosine(lr_final=0.1, schedule_batches=100)
    assert hp.lr_at(0) == pytest.approx(0.01)
    assert hp.lr_at(50) == pytest.approx(0.01 * (0.1 + 0.9 * 0.5))
    assert hp.lr_at(100) == pytest.approx(0.001)
    assert hp.lr_at(1000) == pytest.approx(0.001)
    rates = [hp.lr_at(b) for b in range(101)]
    assert all(a >= b for a, b in zip(rates, rates[1:]))
    assert hp.lr_at(25) == pytest.approx(0.01 * (0.1 + 0.9 * (1 + math.cos(math.pi / 4)) / 2))


def test_a_constant_rate_or_an_unknown_horizon_keeps_lr():
    assert FFHyperParams(lr=0.02).lr_at(10_000) == 0.02
    assert _cosine().lr_at(10_000) == 0.01  # schedule_batches 0: no horizon known


def test_the_run_fills_the_horizon_unless_the_config_set_it():
    assert _cosine().with_schedule_horizon(300).schedule_batches == 300
    assert _cosine(schedule_batches=7).with_schedule_horizon(300).schedule_batches == 7
    assert FFHyperParams().with_schedule_horizon(300).schedule_batches == 0


def test_bad_schedule_values_are_refused_naming_the_key():
    for bad, key in (({'lr_schedule': 'step'}, 'lr_schedule'), ({'lr_final': 1.5}, 'lr_final'),
                     ({'lr_final': -0.1}, 'lr_final'), ({'schedule_batches': -1},
                                                        'schedule_batches'),
                     ({'schedule_batches': 2.5}, 'schedule_batches')):
        with pytest.raises(ValueError, match=key):
            FFHyperParams(**bad).validate()


def _model(schedule: dict) -> dict:
    return {'name': 'sched', 'dataset': 'mnist', 'supervised': True,
            'input_shape': [1, 28, 28], 'layer_defaults': {'lr': 0.01, **schedule},
            'training': {'epochs': 2, 'batch_size': 10},
            'layers': [[-1, 'FFDense', [20]], [-1, 'FFDense', [20, {'lr': 0.1}]]]}


def test_a_model_config_schedules_every_layer_and_the_run_sets_each_horizon():
    model = load_model_config(_model({'lr_schedule': 'cosine', 'lr_final': 0.05}), LAYERS)
    filled = model.with_schedule_horizon(40)
    assert [spec.hparams.schedule_batches for spec in filled.trainable_layers] == [40, 40]
    assert [spec.hparams.lr for spec in filled.trainable_layers] == [0.01, 0.1]
    assert load_model_config(filled.to_dict(), LAYERS) == filled


def test_a_bad_schedule_in_a_model_config_is_one_error_naming_the_key():
    with pytest.raises(ConfigError, match=r'layer_defaults\.lr_schedule'):
        load_model_config(_model({'lr_schedule': 'linear'}), LAYERS)


def test_the_trainer_steps_with_the_scheduled_rate_and_resumes_at_its_batch():
    hp = _cosine(lr_final=0.0, schedule_batches=4)
    torch.manual_seed(0)
    trainer = LocalTrainer(FFDense(6, 8), hp)
    x_pos, x_neg = torch.rand(5, 6), torch.rand(5, 6)
    seen = []
    for _ in range(3):
        trainer.step(x_pos, x_neg)
        seen.append(trainer.optimizer.param_groups[0]['lr'])
    assert seen == pytest.approx([hp.lr_at(0), hp.lr_at(1), hp.lr_at(2)])
    resumed = LocalTrainer(FFDense(6, 8), hp)
    resumed.load_state_dict(copy.deepcopy(trainer.state_dict()))  # as from a file
    assert resumed.optimizer.param_groups[0]['lr'] == pytest.approx(hp.lr_at(3))
    trainer.step(x_pos, x_neg)
    resumed.step(x_pos, x_neg)
    assert torch.equal(trainer.layer.weight, resumed.layer.weight)
