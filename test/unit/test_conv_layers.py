"""Conv, pool, Flatten and Concat rows: shapes, args, gradients against autograd, the network."""
import math

from dff_lifecycle.core.ff.layers import build_row, FFConv2d, LAYER_TYPES
from dff_lifecycle.core.ff.local_trainer import LocalTrainer
from dff_lifecycle.core.hyperparams import FFHyperParams
from dff_lifecycle.core.objectives.goodness import goodness, position_goodness
from dff_lifecycle.core.objectives.pos_neg import ff_loss
import pytest
import torch
import torch.nn.functional as F


def conv(in_shape=(2, 6, 6), args=(4, 3, 1, 1), seed=0):
    layer, shape = build_row('FFConv2d', [in_shape], list(args), seed)
    return layer, shape


@pytest.mark.parametrize('in_shape, args, out', [
    ((1, 28, 28), [8, 5], (8, 24, 24)),
    ((1, 28, 28), [8, 5, 1, 2], (8, 28, 28)),
    ((3, 32, 32), [16, 3, 2, 1], (16, 16, 16)),
])
def test_conv_output_shapes_follow_conv_arithmetic(in_shape, args, out):
    layer, shape = conv(in_shape, args)
    assert shape == out
    assert layer(torch.randn(2, *in_shape)).shape == (2, *out)


@pytest.mark.parametrize('module, args, out', [
    ('MaxPool2d', [2], (4, 3, 3)), ('MaxPool2d', [2, 1], (4, 5, 5)),
    ('AvgPool2d', [3, 3], (4, 2, 2)), ('Flatten', [], (144,)),
])
def test_parameter_free_rows_shape_like_torch(module, args, out):
    layer, shape = build_row(module, [(4, 6, 6)], args, seed=0)
    assert shape == out and not list(layer.parameters())
    assert layer(torch.randn(2, 4, 6, 6)).shape == (2, *out)


def test_concat_joins_along_dim_one_like_yolov5():
    layer, shape = build_row('Concat', [(4, 6, 6), (2, 6, 6)], [1], seed=0)
    assert shape == (6, 6, 6)
    joined = layer([torch.ones(2, 4, 6, 6), torch.zeros(2, 2, 6, 6)])
    assert joined.shape == (2, 6, 6, 6) and joined[:, :4].eq(1).all()


@pytest.mark.parametrize('module, shapes, args, message', [
    ('FFConv2d', [(784,)], [8, 5], 'needs a \\(C, H, W\\) input'),
    ('FFConv2d', [(1, 4, 4)], [8, 5], 'does not fit a 4x4 input'),
    ('MaxPool2d', [(1, 4, 4)], [8], 'does not fit'),
    ('Concat', [(4, 6, 6), (2, 5, 6)], [1], 'must match except along dim 1'),
    ('Concat', [(4, 6, 6), (2, 6, 6)], [4], 'dim must be 1..3'),
    ('FFConv2d', [(1, 8, 8)], [8, 0], 'kernel_size must be an integer >= 1'),
    ('FFConv2d', [(1, 8, 8)], [8], r'FFConv2d args must be \[out_channels, kernel_size'),
    ('Flatten', [(1, 8, 8)], [1], r'Flatten args must be \[\]'),
])
def test_unfit_rows_are_refused_in_one_line(module, shapes, args, message):
    with pytest.raises(ValueError, match=message):
        build_row(module, shapes, args, seed=0)


def test_conv_init_is_seeded_and_bounded_like_torch():
    first, _ = conv(seed=5)
    again, _ = conv(seed=5)
    assert torch.equal(first.weight, again.weight)
    bound = 1 / math.sqrt(2 * 3 * 3)
    assert first.weight.abs().max() <= bound
    assert LAYER_TYPES['FFConv2d'].parameter_count([(2, 6, 6)], [4, 3]) == 4 * 2 * 9 + 4


def test_conv_normalises_each_position_over_its_channels():
    layer, _ = conv()
    x = torch.randn(3, 2, 6, 6)
    prepared = layer.prepare_input(x)
    rms = prepared.square().mean(dim=1).sqrt()
    torch.testing.assert_close(rms, torch.ones_like(rms), atol=1e-5, rtol=0)
    # A flat (overlaid) input is viewed in the layer's shape.
    torch.testing.assert_close(layer(x.flatten(1)), layer(x))
    # Scaling one position's channel vector changes nothing downstream.
    scaled = x.clone()
    scaled[:, :, 2, 3] *= 7.0
    torch.testing.assert_close(layer(scaled), layer(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('scope', ['map', 'position'])
@pytest.mark.parametrize('loss', ['softplus', 'symba'])
def test_conv_step_gradient_matches_autograd_in_float64(scope, loss):
    torch.manual_seed(0)
    layer = FFConv2d((2, 5, 5), 3, 3, 1, 1, generator=torch.Generator().manual_seed(1)).double()
    x = torch.randn(8, 2, 5, 5, dtype=torch.float64)

    def objective(weight, bias):
        prepared = layer.prepare_input(x)
        h = F.relu(F.conv2d(prepared, weight, bias, 1, 1))
        g = position_goodness(h) if scope == 'position' else goodness(h)
        return ff_loss(g[:4].flatten(), g[4:].flatten(), 0.5, loss)

    assert torch.autograd.gradcheck(objective, (layer.weight, layer.bias))
    # The trainer's step uses exactly that gradient: one SGD step moves the weights by -lr * g.
    hparams = FFHyperParams(lr=0.1, optimizer='sgd', loss=loss, threshold=0.5,
                            goodness_scope=scope)
    weight, bias = layer.weight.detach().clone(), layer.bias.detach().clone()
    grad_w, grad_b = torch.autograd.grad(objective(layer.weight, layer.bias),
                                         (layer.weight, layer.bias))
    trainer = LocalTrainer(layer, hparams)
    trainer.step(x[:4], x[4:])
    torch.testing.assert_close(layer.weight.detach(), weight - 0.1 * grad_w)
    torch.testing.assert_close(layer.bias.detach(), bias - 0.1 * grad_b)


def test_position_goodness_averages_to_map_goodness():
    h = torch.rand(3, 4, 5, 5)
    torch.testing.assert_close(position_goodness(h).mean(dim=1), goodness(h))
    assert position_goodness(torch.rand(3, 7)).shape == (3, 1)


def test_a_conv_layer_learns_to_separate_positives_from_negatives():
    torch.manual_seed(0)
    layer, _ = conv((1, 8, 8), (6, 3, 1, 1), seed=0)
    trainer = LocalTrainer(layer, FFHyperParams(lr=0.01, goodness_scope='position'))
    pos = torch.zeros(32, 1, 8, 8)
    pos[:, :, :, ::2] = 1.0        # vertical stripes
    neg = pos.transpose(2, 3)      # horizontal stripes
    first = trainer.step(pos, neg).loss
    for _ in range(150):
        last = trainer.step(pos, neg)
    assert last.loss < 0.5 * first
    assert last.goodness_pos > last.goodness_neg
