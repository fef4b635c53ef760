"""The learning curve of a one-process run: test accuracy per epoch against training time."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from dff_lifecycle.core.config import load_layer_config, load_model_config
from dff_lifecycle.core.run.experiment import run_single_process
from synthetic import random_mnist
import torch

REPO = Path(__file__).resolve().parents[2]


def conv_model(**training):
    return load_model_config({
        'name': 'curve', 'dataset': 'mnist', 'supervised': True,
        'input_shape': [1, 28, 28], 'layer_defaults': {'input_norm': 'batch'},
        'training': {'batch_size': 50, 'epochs': 3, 'train_eval_limit': 0,
                     'augment_crop': 2, **training},
        'layers': [[-1, 'FFConv2d', [10, 3, 1, 1]], [-1, 'MaxPool2d', [2]],
                   [-1, 'FFDense', [20]]]},
        load_layer_config(REPO / 'params' / 'layers.yaml'))


def test_the_curve_has_a_point_every_n_epochs_written_as_it_goes(tmp_path):
    lines: list[str] = []
    data = dataclasses.replace(random_mnist(), mean=(0.5,), std=(0.25,))  # saved with weights
    metrics = run_single_process(conv_model(curve_every=2, curve_samples=30), data,
                                 'cpu', tmp_path, progress=False, log=lines.append)
    curve = json.loads((tmp_path / 'curve.json').read_text())
    assert curve == metrics['curve'] and json.loads(
        (tmp_path / 'metrics.json').read_text())['curve'] == curve
    assert [point['epoch'] for point in curve] == [2]   # epochs 2 of 3 (not 3: 3 % 2)
    assert curve[0]['samples'] == 30 and 0.0 <= curve[0]['test_accuracy'] <= 1.0
    assert 0.0 < curve[0]['train_seconds'] <= metrics['train_seconds']
    assert sum('epoch 2: test accuracy' in line for line in lines) == 1
    assert (tmp_path / 'training.png').stat().st_size > 0


def test_scoring_the_curve_changes_nothing_the_run_learns():
    """Eval mode keeps BatchNorm's running statistics, and no random number is drawn."""
    without = run_single_process(conv_model(), random_mnist(), 'cpu', progress=False,
                                 log=lambda _line: None)
    torch.manual_seed(123)  # the curve must not depend on, or move, the global generator
    with_curve = run_single_process(conv_model(curve_every=1), random_mnist(), 'cpu',
                                    progress=False, log=lambda _line: None)
    assert len(with_curve['curve']) == 3 and 'curve' not in without
    assert with_curve['test_accuracy'] == without['test_accuracy']
    assert with_curve['history'] == without['history']
