"""FFNetwork: layers built from resolved specs, trained greedily, read out without grad."""
from dataclasses import dataclass, field, replace
from types import SimpleNamespace
from typing import Any

from dff_lifecycle.core.ff.layers import FFDense
from dff_lifecycle.core.ff.network import FFNetwork
from dff_lifecycle.core.hyperparams import FFHyperParams
import pytest
from synthetic import separable_batch
import torch


@dataclass(frozen=True)
class Spec:
    """Stand-in for config.LayerSpecConfig with the same fields."""

    index: int
    source_index: int
    in_features: int
    out_features: int
    module: str = 'FFDense'
    args: tuple[Any, ...] = ()
    hparams: FFHyperParams = field(default_factory=FFHyperParams)
    seed: int = 0

    @property
    def sources(self) -> tuple[int, ...]:
        return (self.source_index,)

    @property
    def in_shape(self) -> tuple[int, ...]:
        return (self.in_features,)

    @property
    def out_shape(self) -> tuple[int, ...]:
        return (self.out_features,)


def _chain(sizes: list[int], seed: int = 0, **hparams) -> list[Spec]:
    return [Spec(i, i - 1, n_in, n_out, args=(n_out,), hparams=FFHyperParams(**hparams),
                 seed=seed * 1000 + i)
            for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:]))]


def _batch(n: int = 24, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    return separable_batch(n, 12, seed)


def test_layers_are_registered_and_seeded_per_layer():
    net = FFNetwork(_chain([12, 8, 8]))
    twin = FFNetwork(_chain([12, 8, 8]))
    assert isinstance(net.layers[0], FFDense) and len(net.trainers) == 2
    assert {'layers.0.weight', 'layers.1.bias'} <= set(net.state_dict())
    assert net.trainers[1].layer is net.layers[1]
    for a, b in zip(net.parameters(), twin.parameters()):
        assert torch.equal(a, b)
    other_seed = FFNetwork(_chain([12, 8, 8], seed=1))
    assert not torch.equal(net.layers[1].weight, other_seed.layers[1].weight)


def test_train_batch_feeds_each_layer_its_source_output():
    net = FFNetwork(_chain([12, 8, 6], lr=0.05))
    x_pos, x_neg = _batch()
    results = net.train_batch(x_pos, x_neg, steps=2)
    assert [r.h_pos.shape for r in results] == [(24, 8), (24, 6)]
    assert all(t.steps_seen == 2 for t in net.trainers)
    for _ in range(20):
        results = net.train_batch(x_pos, x_neg)
    assert all(r.goodness_pos > r.goodness_neg for r in results)


def test_activities_follow_source_index_without_grad():
    specs = _chain([12, 8, 6]) + [Spec(2, 0, 8, 5, args=(5,), seed=2)]  # skips layer 1
    net = FFNetwork(specs)
    x, _ = _batch()
    activities = net.activities(x)
    assert [a.shape for a in activities] == [(24, 8), (24, 6), (24, 5)]
    assert not any(a.requires_grad for a in activities)
    torch.testing.assert_close(activities[2], net.trainers[2].infer(activities[0]))
    results = net.train_batch(*_batch())
    assert results[2].h_pos.shape == (24, 5)


def test_from_model_config_reads_resolved_layers():
    cfg = SimpleNamespace(layers=tuple(_chain([12, 4])))
    net = FFNetwork.from_model_config(cfg, device=torch.device('cpu'))
    assert net.device == torch.device('cpu') and len(net.layers) == 1
    assert net.goodness_reductions == ['mean']


@pytest.mark.parametrize('change, message', [
    (lambda s: replace(s, index=5), 'in order'),
    (lambda s: replace(s, source_index=1), 'earlier layer'),
    (lambda s: replace(s, in_features=7), 'in_features 7'),
    (lambda s: replace(s, out_features=3), r'builds outputs of shape \[6\]'),
])
def test_bad_wiring_is_rejected(change, message):
    specs = _chain([12, 8, 6])
    specs[1] = change(specs[1])
    with pytest.raises(ValueError, match=message):
        FFNetwork(specs)


def test_empty_network_is_rejected():
    with pytest.raises(ValueError, match='at least one layer'):
        FFNetwork([])
