"""The hand-written FFDense gradient must equal autograd's for every loss and reduction."""
from dff_lifecycle.core.ff.fused_step import fused_forward_backward, supports_fused
from dff_lifecycle.core.ff.layers import FFDense
from dff_lifecycle.core.ff.local_trainer import LocalTrainer
from dff_lifecycle.core.hyperparams import FFHyperParams
from dff_lifecycle.core.objectives.goodness import goodness
from dff_lifecycle.core.objectives.pos_neg import ff_loss
import pytest
import torch


def _layer(seed=0):
    return FFDense(12, 7, generator=torch.Generator().manual_seed(seed)).double()


def _batch(n_pos, n_neg, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n_pos, 12, generator=gen, dtype=torch.float64), \
        torch.randn(n_neg, 12, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize('loss,reduction,n_neg', [
    ('softplus', 'mean', 9), ('softplus', 'sum', 9), ('softplus', 'mean', 5),
    ('symba', 'mean', 9), ('symba', 'sum', 9)])
def test_fused_gradient_equals_autograd(loss, reduction, n_neg):
    hparams = FFHyperParams(threshold=0.5, loss=loss, goodness=reduction)
    x_pos, x_neg = _batch(9, n_neg)
    reference = _layer()
    g_pos = goodness(reference(x_pos), reduction)
    g_neg = goodness(reference(x_neg), reduction)
    expected = ff_loss(g_pos, g_neg, 0.5, loss, hparams.symba_alpha)
    expected.backward()

    fused = _layer()
    x = fused.prepare_input(torch.cat([x_pos, x_neg]))
    got, got_pos, got_neg, h = fused_forward_backward(fused, x, 9, hparams, keep_activities=True)
    torch.testing.assert_close(got, expected.detach())
    torch.testing.assert_close(got_pos, g_pos.detach())
    torch.testing.assert_close(got_neg, g_neg.detach())
    torch.testing.assert_close(h, reference(torch.cat([x_pos, x_neg])).detach())
    torch.testing.assert_close(fused.weight.grad, reference.weight.grad)
    torch.testing.assert_close(fused.bias.grad, reference.bias.grad)


def test_symba_refuses_unpaired_batches():
    x = _layer().prepare_input(torch.cat(_batch(4, 3)))
    with pytest.raises(ValueError, match='pairs positives with negatives'):
        fused_forward_backward(_layer(), x, 4, FFHyperParams(loss='symba'), keep_activities=False)


def test_only_plain_ff_dense_takes_the_fused_path():
    assert supports_fused(_layer(), FFHyperParams())
    assert not supports_fused(FFDense(3, 2, bias=False), FFHyperParams())
    assert not supports_fused(torch.nn.Linear(3, 2), FFHyperParams())


def test_trainer_steps_match_an_autograd_trainer():
    class PlainDense(FFDense):  # a subclass is not fused, so it trains through autograd
        pass

    gen = torch.Generator().manual_seed(0)
    fused = LocalTrainer(FFDense(12, 7, generator=gen).double(), FFHyperParams(lr=0.01))
    plain_layer = PlainDense(12, 7).double()
    plain_layer.load_state_dict(fused.layer.state_dict())
    plain = LocalTrainer(plain_layer, FFHyperParams(lr=0.01))
    x_pos, x_neg = _batch(9, 9)
    a = fused.step(x_pos, x_neg, steps=5)
    b = plain.step(x_pos, x_neg, steps=5)
    assert a.loss == pytest.approx(b.loss, rel=1e-9)
    torch.testing.assert_close(a.h_pos, b.h_pos)
    torch.testing.assert_close(fused.layer.weight, plain.layer.weight)
