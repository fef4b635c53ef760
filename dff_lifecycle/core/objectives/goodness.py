"""Goodness: how strongly a layer responds to a sample (the quantity every FF objective reads)."""
from dff_lifecycle.core.hyperparams import GOODNESS_REDUCTIONS
from torch import Tensor


def goodness(h: Tensor, reduction: str = 'mean') -> Tensor:
    """Return per-sample goodness, shape (B,): mean or sum of h**2 over the non-batch dims."""
    if h.dim() < 2:
        raise ValueError(f'goodness expects activities (B, ...), got shape {tuple(h.shape)}')
    return reduce_squares(h.flatten(1).pow(2), reduction)


def reduce_squares(squared: Tensor, reduction: str, dim: int = 1) -> Tensor:
    """Mean or sum of squared activities over `dim` (the features, or the channels)."""
    if reduction == 'mean':
        return squared.mean(dim=dim)
    if reduction == 'sum':
        return squared.sum(dim=dim)
    known = ', '.join(GOODNESS_REDUCTIONS)
    raise ValueError(f'unknown goodness reduction {reduction!r} (known: {known})')


def position_goodness(h: Tensor, reduction: str = 'mean') -> Tensor:
    """
    Goodness at every spatial position: (B, H*W) over the channels of (B, C, H, W).

    Activities without spatial dims give goodness(h)[:, None].
    """
    if h.dim() < 3:
        return goodness(h, reduction).unsqueeze(1)
    return reduce_squares(h.flatten(2).pow(2), reduction)  # over C of (B, C, H*W)
