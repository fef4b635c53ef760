"""Silent units: relu_grad full and peer normalisation bring a unit that stopped firing back."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

from dff_lifecycle.core.config import load_layer_config, load_model_config
from dff_lifecycle.core.ff.fused_step import supports_fused
from dff_lifecycle.core.ff.layers import FFConv2d, FFDense
from dff_lifecycle.core.ff.local_trainer import LocalTrainer
from dff_lifecycle.core.ff.sharding import ShardTrainer, split_dense
from dff_lifecycle.core.hyperparams import FFHyperParams
from dff_lifecycle.core.objectives.separation import (describe_silent, SeparationWatch,
                                                      silent_group_layers)
from dff_lifecycle.core.run.experiment import run_single_process
from dff_lifecycle.master.pipeline_watch import PipelineWatch
from dff_lifecycle.master.plan import build_plan
from dff_lifecycle.master.training import DistributedTraining
import pytest
from synthetic import random_mnist
import torch


def test_full_relu_grad_keeps_the_forward_and_passes_the_gradient_of_negative_inputs():
    for layer in (FFDense(4, 3), FFConv2d((2, 4, 4), 3, 3, 1, 1)):
        x = torch.randn(5, *((4,) if isinstance(layer, FFDense) else (2, 4, 4)))
        with torch.no_grad():
            layer.bias.fill_(-100.0)  # every unit dead: ReLU gives 0 everywhere
        before = layer(x)
        assert float(before.detach().abs().sum()) == 0.0
        before.pow(2).sum().backward()  # d/dh of h^2 is 0 at h = 0 ...
        layer.zero_grad()
        layer(x).sum().backward()
        assert float(layer.bias.grad.abs().sum()) == 0.0  # ... and torch's ReLU stops the rest
        layer.zero_grad()
        layer.set_relu_grad('full')
        assert torch.equal(layer(x), before.detach())
        layer(x).sum().backward()
        assert float(layer.bias.grad.abs().min()) > 0.0  # full: the units can come back
    with pytest.raises(ValueError, match='relu_grad must be one of zero, full'):
        FFDense(2, 2).set_relu_grad('half')


def test_auto_is_full_under_class_groups_and_zero_under_pos_neg():
    groups = dataclasses.replace(FFHyperParams(objective='class_groups'), groups=10)
    assert groups.resolved_relu_grad() == 'full'
    assert FFHyperParams().resolved_relu_grad() == 'zero'
    assert FFHyperParams(relu_grad='full').resolved_relu_grad() == 'full'
    with pytest.raises(ValueError, match='relu_grad'):
        FFHyperParams(relu_grad='leaky').validate()
    trainer = LocalTrainer(FFDense(8, 20), groups)
    assert trainer.layer.relu_grad == 'full'
    dense = LocalTrainer(FFDense(8, 20), FFHyperParams(relu_grad='full'))
    assert not supports_fused(dense.layer, dense.hparams)  # the fused step has torch's ReLU
    assert supports_fused(LocalTrainer(FFDense(8, 20), FFHyperParams()).layer, FFHyperParams())


def test_peer_normalisation_brings_a_silent_class_group_back():
    hparams = dataclasses.replace(
        FFHyperParams(objective='class_groups', lr=0.01, peer_norm=0.3), groups=2)
    trainer = LocalTrainer(FFDense(6, 4, generator=torch.Generator().manual_seed(0)), hparams)
    with torch.no_grad():
        trainer.layer.bias[2:] = -5.0  # class 1's two units never fire
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(64, 6, generator=gen), torch.randint(2, (64,), generator=gen)
    assert float(trainer.infer(x)[:, 2:].abs().sum()) == 0.0
    for _ in range(200):
        trainer.step_classes(x, y)
    assert float(trainer.infer(x)[:, 2:].sum()) > 0.0  # firing again
    state = trainer.state_dict()
    assert state['peer_means'].shape == (4,)
    again = LocalTrainer(FFDense(6, 4), hparams)
    again.load_state_dict(state)
    assert torch.equal(again.peer_means, trainer.peer_means)


def test_without_peer_normalisation_a_silent_group_stays_silent():
    hparams = dataclasses.replace(FFHyperParams(objective='class_groups', lr=0.01), groups=2)
    trainer = LocalTrainer(FFDense(6, 4, generator=torch.Generator().manual_seed(0)), hparams)
    with torch.no_grad():
        trainer.layer.bias[2:] = -5.0
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(64, 6, generator=gen), torch.randint(2, (64,), generator=gen)
    for _ in range(200):
        trainer.step_classes(x, y)
    assert float(trainer.infer(x)[:, 2:].abs().sum()) == 0.0  # the failure peer_norm prevents
    assert 'peer_means' not in trainer.state_dict()
    with pytest.raises(ValueError, match='peer_norm'):
        FFHyperParams(peer_norm=-1.0).validate()


# ----------------------------------------------------------- a class group that stays silent

def class_groups(**fields) -> FFHyperParams:
    return dataclasses.replace(FFHyperParams(objective='class_groups', **fields), groups=10)


def dead_group_2() -> FFDense:
    """20 units, two per class group: group 2's units (4 and 5) off for every input."""
    layer = FFDense(8, 20)
    with torch.no_grad():
        layer.bias.fill_(100.0)  # every other unit on for every input
        layer.bias[4:6] = -100.0
    return layer


def test_a_step_names_the_class_groups_with_no_active_unit():
    x, y = torch.rand(16, 8), torch.arange(16) % 10
    assert LocalTrainer(dead_group_2(), class_groups()).step_classes(x, y).silent_groups == (2,)
    alive = dead_group_2()
    with torch.no_grad():
        alive.bias.fill_(100.0)
    assert LocalTrainer(alive, class_groups()).step_classes(x, y).silent_groups == ()


def test_shards_of_a_split_layer_name_the_silent_groups_of_the_whole_layer():
    x, y = torch.rand(16, 8), torch.arange(16) % 10
    ranges = [(0, 10), (10, 20)]
    shards = [ShardTrainer(part, units, 20, class_groups())
              for part, units in zip(split_dense(dead_group_2(), ranges), ranges)]
    total = sum(shard.forward(x) for shard in shards)
    assert [shard.finish(total, y).silent_groups for shard in shards] == [(2,), (2,)]


def test_the_watch_warns_of_a_group_silent_over_its_whole_window():
    watch = SeparationWatch(window=3)
    watch.record(2.0, 1.0, (3,))
    watch.record(2.0, 1.0, (3, 7))
    assert watch.verdict() == ''  # too early
    watch.record(2.0, 1.0, (3,))
    assert 'class group(s) 3 silent over its last 3 batches' in watch.verdict()
    assert 'peer_norm' in watch.verdict() and '\n' not in watch.verdict()
    watch.record(2.0, 1.0, ())  # group 3 fired once in the window: no warning
    assert watch.verdict() == ''


def test_the_training_log_names_a_layer_whose_group_stayed_silent_all_epoch(monkeypatch):
    step_classes = LocalTrainer.step_classes

    def group_5_silent(self, *args, **kwargs):
        return dataclasses.replace(step_classes(self, *args, **kwargs), silent_groups=(5,))

    monkeypatch.setattr(LocalTrainer, 'step_classes', group_5_silent)
    data = random_mnist()
    cfg = load_model_config({'name': 'groups', 'dataset': 'mnist', 'supervised': True,
                             'layer_defaults': {'objective': 'class_groups'},
                             'training': {'batch_size': 50, 'epochs': 1,
                                          'train_eval_limit': 0},
                             'layers': [[-1, 'FFDense', [20]]]},
                            load_layer_config(Path(__file__).resolve().parents[2] / 'params'
                                              / 'layers.yaml'))
    lines = []
    run_single_process(cfg, data, 'cpu', progress=False, log=lines.append)
    assert any(line.startswith('WARNING: layer 0: class group(s) 5 silent through epoch 1')
               for line in lines), lines


def test_the_window_names_its_silent_groups_once_full():
    watch = SeparationWatch(window=2)
    watch.record(2.0, 1.0, (1, 4))
    assert watch.silent_groups() == frozenset()  # too early to tell
    watch.record(2.0, 1.0, (4,))
    assert watch.silent_groups() == {4}


def test_the_distributed_training_log_names_a_group_silent_at_an_epochs_end():
    """The master's history takes each layer's last status of an epoch; run.py logs it."""
    cfg = load_model_config({'name': 'groups', 'dataset': 'mnist', 'supervised': True,
                             'layer_defaults': {'objective': 'class_groups'},
                             'training': {'batch_size': 50, 'epochs': 2},
                             'layers': [[-1, 'FFDense', [20]], [-1, 'FFDense', [20]]]},
                            load_layer_config(Path(__file__).resolve().parents[2] / 'params'
                                              / 'layers.yaml'))
    plan = build_plan(cfg, ['server_1'])
    watch = PipelineWatch({p.full_name: p.unit for p in plan.placements})
    stream = 'train_1'
    for seq, (layer, groups) in enumerate([(0, ()), (1, (5,)), (0, (2,)), (1, (5,)),
                                           (0, (2,)), (1, ())]):
        watch.on_status(SimpleNamespace(
            node_name=f'/groups/layer_{layer}', server='', state='active', stream=stream,
            computing=False, last_batch_seq=seq, error='', rejected_tensors=0, loss=1.0,
            weights_loaded=False, goodness_positive=2.0, goodness_negative=1.0,
            silent_groups=groups))
    training = DistributedTraining(cfg, plan, SimpleNamespace(watch=watch), None, None, '1',
                                   None)
    training.stream = stream
    history = training.history({0: 0, 1: 0, 2: 0, 3: 1, 4: 1, 5: 1})  # seq -> epoch
    assert [(r['layer'], r['epoch'], r.get('silent_groups')) for r in history] == [
        (0, 1, [2]), (0, 2, [2]), (1, 1, [5]), (1, 2, None)]
    assert silent_group_layers(history) == [
        'layer 0: ' + describe_silent([2], 'over the last 50 batches of epoch 1'),
        'layer 0: ' + describe_silent([2], 'over the last 50 batches of epoch 2'),
        'layer 1: ' + describe_silent([5], 'over the last 50 batches of epoch 1')]
