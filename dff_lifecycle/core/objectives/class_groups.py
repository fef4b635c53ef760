"""
The class-group objective (channel-wise competition, as in CwComp, AAAI 2024).

A layer's channels (a dense layer's units) are split into one equal group per class.
The goodness of group k is the mean (or sum) of the squared activities of its channels
over the whole map; the groups' goodness are the layer's class logits, and the local
loss is their cross-entropy against the true label. No negative data, no label in the
input: a conv layer learns from the label at every position it sees, and inference
takes one forward pass per image instead of one per label candidate.
"""
from dff_lifecycle.core.objectives.goodness import reduce_squares
import torch
from torch import Tensor
import torch.nn.functional as F


def check_groups(channels: int, groups: int) -> None:
    """Raise ValueError unless `channels` split into `groups` equal groups."""
    if groups < 2:
        raise ValueError(f'the class-group objective needs at least 2 groups, got {groups}')
    if channels % groups:
        raise ValueError(f'{channels} channels do not split into {groups} equal class groups: '
                         f'use a multiple of {groups}')


def group_goodness(h: Tensor, groups: int, reduction: str = 'mean') -> Tensor:
    """(B, groups) goodness of each channel group of (B, C, ...) activities (C split in order)."""
    if h.dim() < 2:
        raise ValueError(f'group goodness expects activities (B, C, ...), got {tuple(h.shape)}')
    check_groups(h.shape[1], groups)
    per_group = h.reshape(h.shape[0], groups, -1)  # channels of a group, then their positions
    return reduce_squares(per_group.pow(2), reduction, dim=2)


def class_group_loss(g: Tensor, y: Tensor) -> Tensor:
    """Cross-entropy of the group goodness (B, K) taken as logits, against labels (B,)."""
    if g.dim() != 2 or y.shape != (g.shape[0],):
        raise ValueError(f'class-group loss needs goodness (B, K) and labels (B,), got '
                         f'{tuple(g.shape)} and {tuple(y.shape)}')
    return F.cross_entropy(g, y.long())


def true_and_other_goodness(g: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """(B,) goodness of each sample's true group, and (B,) mean goodness of its other groups."""
    true = g.gather(1, y.long().view(-1, 1)).squeeze(1)
    others = (g.sum(dim=1) - true) / max(g.shape[1] - 1, 1)
    return true, others


def silent_group_mask(g: Tensor) -> Tensor:
    """
    Return (K,) True for each class group whose goodness is 0 for every sample of the batch.

    A silent group (all its units' ReLUs off) gives its class the lowest logit for every
    image: that class can never be predicted, however the other groups learn.
    """
    return g.detach().amax(dim=0) <= 0


def class_scores(group_goodness_per_layer: list[Tensor]) -> Tensor:
    """
    (N, K) class scores of several layers: the sum of each layer's log-softmax.

    Each layer's goodness is on its own scale; log-softmax makes each a log-probability
    before they are combined (a product of experts).
    """
    if not group_goodness_per_layer:
        raise ValueError('class scores need the group goodness of at least one layer')
    shape = group_goodness_per_layer[0].shape
    if len(shape) != 2 or any(g.shape != shape for g in group_goodness_per_layer):
        shapes = [tuple(g.shape) for g in group_goodness_per_layer]
        raise ValueError(f'every layer must give (N, K) group goodness, got {shapes}')
    return torch.stack([F.log_softmax(g.float(), dim=1)
                        for g in group_goodness_per_layer]).sum(dim=0)
