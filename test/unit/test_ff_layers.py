"""FF hyperparameters, the FFDense layer and the layer registry."""
import math

from dff_lifecycle.core.ff.layers import (build_layer, FFDense, LAYER_TYPES, OPTIMIZERS,
                                          parse_layer_args)
from dff_lifecycle.core.hyperparams import (FFHyperParams, GOODNESS_REDUCTIONS, LOSS_NAMES,
                                            OPTIMIZER_NAMES)
from dff_lifecycle.core.objectives.goodness import goodness
from dff_lifecycle.core.objectives.pos_neg import LOSSES
import pytest
import torch


def test_default_hparams_are_valid():
    assert FFHyperParams().validate() == FFHyperParams()


@pytest.mark.parametrize('field, value', [
    ('threshold', 0.0), ('lr', -0.1), ('lr', math.nan), ('lr', True), ('symba_alpha', 0),
    ('weight_decay', -1e-4), ('goodness', 'max'), ('loss', 'hinge'), ('optimizer', 'rmsprop'),
])
def test_bad_hparams_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        FFHyperParams(**{field: value}).validate()


def test_overrides_replace_fields_and_reject_unknown_keys():
    hparams = FFHyperParams().with_overrides({'lr': 0.01, 'loss': 'symba'})
    assert (hparams.lr, hparams.loss, hparams.threshold) == (0.01, 'symba', 2.0)
    with pytest.raises(ValueError, match='lrate.*known: threshold, lr'):
        FFHyperParams().with_overrides({'lrate': 0.1})
    with pytest.raises(ValueError, match='lr'):
        FFHyperParams().with_overrides({'lr': 0})


def test_dense_output_depends_only_on_input_direction():
    layer = FFDense(12, 5, generator=torch.Generator().manual_seed(0))
    x = torch.randn(4, 12, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(layer(x), layer(7.5 * x))
    assert torch.all(layer(x) >= 0)


def test_dense_flattens_images_and_survives_zero_input():
    layer = FFDense(2 * 3 * 3, 4, generator=torch.Generator().manual_seed(0))
    images = torch.randn(2, 2, 3, 3, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(layer(images), layer(images.flatten(1)))
    assert torch.isfinite(layer(torch.zeros(1, 18))).all()


def test_dense_rejects_empty_sizes():
    with pytest.raises(ValueError, match='positive'):
        FFDense(0, 3)


def test_build_layer_is_seeded_and_leaves_global_rng_alone():
    rng_before = torch.get_rng_state()
    first, out_features = build_layer('FFDense', 20, [7], seed=3)
    again, _ = build_layer('FFDense', 20, [7, {'lr': 0.1}], seed=3)
    other, _ = build_layer('FFDense', 20, [7], seed=4)
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert out_features == (7,) and isinstance(first, FFDense)
    assert torch.equal(first.weight, again.weight) and torch.equal(first.bias, again.bias)
    assert not torch.equal(first.weight, other.weight)
    bound = 1 / math.sqrt(20)
    assert first.weight.abs().max() <= bound and first.bias.abs().max() <= bound


@pytest.mark.parametrize('args', [[], [0], ['500'], [True], [5, 3], [5, {}, 1], 5])
def test_bad_layer_args_are_rejected(args):
    with pytest.raises(ValueError, match=r'FFDense args must be \[out_features\]'):
        build_layer('FFDense', 10, args, seed=0)


def test_parse_layer_args_returns_overrides():
    parsed = LAYER_TYPES['FFDense'].parse_args([500, {'lr': 0.01}])
    assert parsed.out_features == 500 and dict(parsed.overrides) == {'lr': 0.01}
    assert parse_layer_args('FFDense', (3,)).overrides == {}


def test_unknown_layer_type_names_known_types():
    with pytest.raises(ValueError, match="'FFDens'.*known: FFDense"):
        build_layer('FFDens', 10, [5], seed=0)


def test_hyperparameter_choices_name_the_registries_that_implement_them():
    assert tuple(LOSSES) == LOSS_NAMES
    assert tuple(OPTIMIZERS) == OPTIMIZER_NAMES
    h = torch.ones(2, 3)
    assert [float(goodness(h, r)[0]) for r in GOODNESS_REDUCTIONS] == [1.0, 3.0]
