"""Goodness and the local FF losses."""
import math

from dff_lifecycle.core.objectives.goodness import goodness
from dff_lifecycle.core.objectives.pos_neg import ff_loss, LOSSES
import pytest
import torch


def test_goodness_mean_and_sum():
    h = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    torch.testing.assert_close(goodness(h, 'mean'), torch.tensor([2.5, 12.5]))
    torch.testing.assert_close(goodness(h, 'sum'), torch.tensor([5.0, 25.0]))
    torch.testing.assert_close(goodness(h), goodness(h, 'mean'))


def test_goodness_reduces_all_non_batch_dims():
    h = torch.randn(4, 3, 5, 2, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(goodness(h, 'sum'), goodness(h, 'mean') * 30)
    torch.testing.assert_close(goodness(h, 'sum'), goodness(h.flatten(1), 'sum'))


def test_goodness_rejects_bad_input():
    with pytest.raises(ValueError, match='max'):
        goodness(torch.ones(2, 3), 'max')
    with pytest.raises(ValueError, match='shape'):
        goodness(torch.ones(3))


def test_softplus_loss_known_value():
    g_pos, g_neg = torch.tensor([2.0, 3.0]), torch.tensor([1.0])
    # Pooled mean of softplus(2-2), softplus(2-3), softplus(1-2).
    expected = (math.log(2.0) + 2 * math.log1p(math.exp(-1.0))) / 3
    assert ff_loss(g_pos, g_neg, threshold=2.0).item() == pytest.approx(expected, rel=1e-6)


def test_softplus_loss_is_stable_for_large_goodness():
    loss = ff_loss(torch.tensor([0.0]), torch.tensor([1e4]), threshold=2.0)
    assert math.isfinite(loss.item())
    assert loss.item() == pytest.approx((2.0 + (1e4 - 2.0)) / 2, rel=1e-4)


def test_symba_loss_known_value_ignores_threshold():
    g_pos, g_neg = torch.tensor([3.0, 1.0]), torch.tensor([1.0, 1.0])
    expected = (math.log1p(math.exp(-8.0)) + math.log(2.0)) / 2
    for threshold in (0.0, 100.0):
        loss = ff_loss(g_pos, g_neg, threshold, kind='symba', alpha=4.0)
        assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_symba_needs_paired_batches():
    with pytest.raises(ValueError, match='equal shapes'):
        ff_loss(torch.ones(2), torch.ones(3), 2.0, kind='symba')


@pytest.mark.parametrize('kind', sorted(LOSSES))
def test_gradient_step_raises_positive_and_lowers_negative_goodness(kind):
    gen = torch.Generator().manual_seed(1)
    h_pos = torch.rand(8, 6, generator=gen).requires_grad_()
    h_neg = torch.rand(8, 6, generator=gen).requires_grad_()
    before_pos, before_neg = goodness(h_pos).detach(), goodness(h_neg).detach()
    ff_loss(goodness(h_pos), goodness(h_neg), threshold=0.5, kind=kind).backward()
    with torch.no_grad():
        h_pos -= 0.1 * h_pos.grad
        h_neg -= 0.1 * h_neg.grad
    assert torch.all(goodness(h_pos) > before_pos)
    assert torch.all(goodness(h_neg) < before_neg)


def test_unknown_loss_lists_choices():
    with pytest.raises(ValueError, match='softplus, symba'):
        ff_loss(torch.ones(1), torch.ones(1), 2.0, kind='hinge')
