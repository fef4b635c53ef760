"""Synthetic FF data shared by unit tests."""
import torch


def separable_batch(n: int, features: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Return positives and negatives that point in different directions.

    First vs second half of the features, so a single FF layer can learn to separate
    them.
    """
    gen = torch.Generator().manual_seed(seed)
    half = features // 2
    x_pos = torch.randn(n, features, generator=gen) * 0.3
    x_pos[:, :half] += 1.0
    x_neg = torch.randn(n, features, generator=gen) * 0.3
    x_neg[:, half:] += 1.0
    return x_pos, x_neg
