"""Silent units: relu_grad full and peer normalisation bring a unit that stopped firing back."""
from __future__ import annotations

import dataclasses

from dff_lifecycle.core.ff.fused_step import supports_fused
from dff_lifecycle.core.ff.layers import FFConv2d, FFDense
from dff_lifecycle.core.ff.local_trainer import LocalTrainer
from dff_lifecycle.core.hyperparams import FFHyperParams
import pytest
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
