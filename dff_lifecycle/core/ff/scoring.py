"""Turning layer activities into predictions: label goodness scores and head features."""
from typing import Sequence

from dff_lifecycle.core.objectives.goodness import goodness
import torch
from torch import Tensor
import torch.nn.functional as F


def layer_goodness(activities: Sequence[Tensor], reductions: Sequence[str]) -> list[Tensor]:
    """Per-sample goodness of each activity with its layer's reduction ('mean' or 'sum')."""
    if len(activities) != len(reductions):
        raise ValueError(f'{len(activities)} activities but {len(reductions)} reductions')
    return [goodness(h, reduction) for h, reduction in zip(activities, reductions)]


def label_scores(goodness_per_layer: Sequence[Tensor], num_classes: int) -> Tensor:
    """(N, C) scores from goodness of sample-major candidates (row n*C + c), summed over layers."""
    if not goodness_per_layer:
        raise ValueError('label_scores needs the goodness of at least one layer')
    shape = goodness_per_layer[0].shape
    if len(shape) != 1 or shape[0] % num_classes:
        raise ValueError(f'goodness must be (N*{num_classes},), got {tuple(shape)}')
    if any(g.shape != shape for g in goodness_per_layer):
        shapes = [tuple(g.shape) for g in goodness_per_layer]
        raise ValueError(f'every layer must score the same candidates, got shapes {shapes}')
    total = torch.stack(list(goodness_per_layer)).sum(dim=0)
    return total.view(-1, num_classes)


def predict_labels(scores: Tensor) -> Tensor:
    """(N,) index of the best-scoring class."""
    return scores.argmax(dim=1)


def normalised_features(activities: Sequence[Tensor]) -> Tensor:
    """
    Concatenation of each layer's flattened activity scaled to unit length.

    Normalising per layer keeps a layer with large activities from dominating the head's input.
    """
    if not activities:
        raise ValueError('normalised_features needs at least one layer of activities')
    return torch.cat([F.normalize(h.flatten(1), p=2, dim=1) for h in activities], dim=1)


def accuracy(pred: Tensor, y: Tensor) -> float:
    """Fraction of predictions equal to the labels."""
    if pred.shape != y.shape or pred.numel() == 0:
        raise ValueError(f'accuracy needs equal, non-empty shapes, got {tuple(pred.shape)} '
                         f'and {tuple(y.shape)}')
    return float((pred == y.to(pred.device)).float().mean())
