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


def random_mnist(train: int = 200, test: int = 50, seed: int = 0):
    """Return a Dataset of uniform noise shaped as MNIST with random labels (for plumbing)."""
    from dff_lifecycle.core.data.datasets import Dataset
    gen = torch.Generator().manual_seed(seed)
    return Dataset('mnist', torch.rand(train, 784, generator=gen),
                   torch.randint(0, 10, (train,), generator=gen),
                   torch.rand(test, 784, generator=gen),
                   torch.randint(0, 10, (test,), generator=gen), (1, 28, 28), 10)
