"""No silent failure to learn: the rule, the watch, the health WARN and the training log."""
from __future__ import annotations

from pathlib import Path

from dff_lifecycle.common.health import LayerFacts, LayerHealth, Level
from dff_lifecycle.core.config import load_layer_config, load_model_config
from dff_lifecycle.core.objectives.separation import (inseparable, inseparable_layers,
                                                      SeparationWatch)
from dff_lifecycle.core.run.experiment import run_single_process
import pytest
from synthetic import random_mnist

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize('g_pos, g_neg, flat', [
    (1.956, 1.956, True), (1.956, 1.950, True), (0.0, 0.0, True),
    (0.244, 0.215, False), (2.0, 1.9, False), (float('nan'), 1.0, False),
])
def test_goodness_equal_within_one_percent_is_inseparable(g_pos, g_neg, flat):
    assert inseparable(g_pos, g_neg) is flat


def test_the_watch_speaks_only_after_a_full_window_of_equal_goodness():
    watch = SeparationWatch(window=5)
    for _ in range(4):
        watch.record(1.956, 1.956)
    assert watch.verdict() == ''
    watch.record(1.956, 1.956)
    assert 'not learning' in watch.verdict() and '1.956 / 1.956' in watch.verdict()
    for _ in range(5):
        watch.record(1.0, 0.5)
    assert watch.verdict() == ''
    watch.reset()
    assert watch.verdict() == ''


def test_a_layer_that_is_not_learning_is_a_warning_on_diagnostics():
    health = LayerHealth()
    facts = LayerFacts(state='active', batches=60, inference_batches=0, loss=0.69,
                       goodness_positive=1.956, goodness_negative=1.956, rejected=0,
                       not_learning='goodness ... inseparable: this layer is not learning')
    report = health.assess(facts, 0.0)
    assert report.level == Level.WARN and 'not learning' in report.message


def test_epoch_records_name_the_layer_and_epoch_that_did_not_separate():
    records = [{'layer': 0, 'epoch': 1, 'loss': 0.7, 'goodness_pos': 1.956,
                'goodness_neg': 1.956},
               {'layer': 1, 'epoch': 1, 'loss': 0.5, 'goodness_pos': 2.5,
                'goodness_neg': 1.0}]
    warnings = inseparable_layers(records)
    assert len(warnings) == 1 and warnings[0].startswith('layer 0: ')
    assert 'through epoch 1' in warnings[0]


def test_a_model_that_does_not_learn_says_so_in_the_training_log():
    # lr so small the weights stay at their start: an overlay barely moves goodness.
    data = random_mnist()
    cfg = load_model_config({'name': 'flat', 'dataset': 'mnist', 'supervised': True,
                             'layer_defaults': {'lr': 1e-12},
                             'training': {'batch_size': 50, 'epochs': 1,
                                          'train_eval_limit': 0},
                             'layers': [[-1, 'FFDense', [20]]]},
                            load_layer_config(REPO / 'params' / 'layers.yaml'))
    lines = []
    run_single_process(cfg, data, 'cpu', progress=False, log=lines.append)
    assert any(line.startswith('WARNING: layer 0: ') and 'not learning' in line
               for line in lines), lines
