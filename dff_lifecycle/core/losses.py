"""Forward-Forward goodness and the layer-local losses built on it."""
from typing import Callable

from dff_lifecycle.core.hyperparams import GOODNESS_REDUCTIONS
import torch
from torch import Tensor
import torch.nn.functional as F

# (g_pos, g_neg, threshold, alpha) -> scalar loss
LossFn = Callable[[Tensor, Tensor, float, float], Tensor]


def goodness(h: Tensor, reduction: str = 'mean') -> Tensor:
    """Return per-sample goodness, shape (B,): mean or sum of h**2 over the non-batch dims."""
    if h.dim() < 2:
        raise ValueError(f'goodness expects activities (B, ...), got shape {tuple(h.shape)}')
    return _reduce(h.flatten(1).pow(2), reduction)


def _reduce(squared: Tensor, reduction: str) -> Tensor:
    """Mean or sum of squared activities over dim 1 (the features, or the channels)."""
    if reduction == 'mean':
        return squared.mean(dim=1)
    if reduction == 'sum':
        return squared.sum(dim=1)
    known = ', '.join(GOODNESS_REDUCTIONS)
    raise ValueError(f'unknown goodness reduction {reduction!r} (known: {known})')


def softplus_loss(g_pos: Tensor, g_neg: Tensor, threshold: float, alpha: float = 4.0) -> Tensor:
    """
    Hinton's loss as a logistic on goodness - threshold; softplus avoids log(1 + exp) overflow.

    Positives and negatives are pooled into one mean, so unequal batch sizes are fine.
    `alpha` is unused; it keeps one signature for every registered loss.
    """
    del alpha
    return torch.cat([F.softplus(threshold - g_pos), F.softplus(g_neg - threshold)]).mean()


def symba_loss(g_pos: Tensor, g_neg: Tensor, threshold: float, alpha: float = 4.0) -> Tensor:
    """Symmetric loss of SymBa (Lee & Song 2023): pairs pos[i] with neg[i], no threshold."""
    del threshold
    if g_pos.shape != g_neg.shape:
        raise ValueError('symba loss pairs positives with negatives and needs equal shapes, '
                         f'got {tuple(g_pos.shape)} and {tuple(g_neg.shape)}')
    return F.softplus(-alpha * (g_pos - g_neg)).mean()


def position_goodness(h: Tensor, reduction: str = 'mean') -> Tensor:
    """
    Goodness at every spatial position: (B, H*W) over the channels of (B, C, H, W).

    Activities without spatial dims give goodness(h)[:, None].
    """
    if h.dim() < 3:
        return goodness(h, reduction).unsqueeze(1)
    return _reduce(h.flatten(2).pow(2), reduction)  # over C of (B, C, H*W)


LOSSES: dict[str, LossFn] = {'softplus': softplus_loss, 'symba': symba_loss}


def ff_loss(g_pos: Tensor, g_neg: Tensor, threshold: float, kind: str = 'softplus',
            alpha: float = 4.0) -> Tensor:
    """Scalar FF loss of the registered kind; an unknown kind raises ValueError."""
    try:
        loss_fn = LOSSES[kind]
    except KeyError:
        raise ValueError(f'unknown FF loss {kind!r} (known: {", ".join(LOSSES)})') from None
    return loss_fn(g_pos, g_neg, threshold, alpha)
