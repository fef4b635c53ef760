"""
The positive/negative objective (Hinton 2022): goodness high for positive data, low for negative.

Each layer sees a batch twice, as positives and as negatives (label overlays, or real
and hybrid images), and its loss separates their goodness: Hinton's softplus around a
threshold, or SymBa's symmetric pairing.
"""
from typing import Callable

import torch
from torch import Tensor
import torch.nn.functional as F

# (g_pos, g_neg, threshold, alpha) -> scalar loss
LossFn = Callable[[Tensor, Tensor, float, float], Tensor]


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


LOSSES: dict[str, LossFn] = {'softplus': softplus_loss, 'symba': symba_loss}


def ff_loss(g_pos: Tensor, g_neg: Tensor, threshold: float, kind: str = 'softplus',
            alpha: float = 4.0) -> Tensor:
    """Scalar FF loss of the registered kind; an unknown kind raises ValueError."""
    try:
        loss_fn = LOSSES[kind]
    except KeyError:
        raise ValueError(f'unknown FF loss {kind!r} (known: {", ".join(LOSSES)})') from None
    return loss_fn(g_pos, g_neg, threshold, alpha)
