"""Positive/negative sample construction (pure functions; every random draw uses `generator`)."""
import math
from typing import Optional, Union

import torch
from torch import Tensor


def overlay_labels(x: Tensor, labels: Tensor, num_classes: int,
                   value: Optional[Union[float, Tensor]] = None) -> Tensor:
    """
    Copy of x flattened to (N, D) with a one-hot label in its first `num_classes` values.

    The hot value defaults to x.max() so the label is as bright as the brightest pixel.
    """
    flat = x.flatten(1)
    n, dim = flat.shape
    if dim < num_classes:
        raise ValueError(f'cannot overlay {num_classes} classes on {dim} features')
    _check_labels(labels, num_classes, expected_n=n)
    out = flat.clone()
    out[:, :num_classes] = 0
    if n == 0:
        return out
    hot = flat.max() if value is None else value
    out[torch.arange(n, device=out.device), labels.to(out.device)] = hot
    return out


def random_wrong_labels(labels: Tensor, num_classes: int, generator: torch.Generator) -> Tensor:
    """Labels drawn uniformly from the classes other than the true one."""
    if num_classes < 2:
        raise ValueError(f'wrong labels need at least 2 classes, got {num_classes}')
    _check_labels(labels, num_classes)
    # A shift in 1..C-1 never maps a class to itself and hits each other class equally often.
    shift = torch.randint(1, num_classes, labels.shape, generator=generator,
                          device=generator.device)
    return (labels + shift.to(labels.device)) % num_classes


def permuted_labels(labels: Tensor, generator: torch.Generator) -> Tensor:
    """
    Return the batch's labels shuffled (mpezeshki/pytorch_forward_forward's negatives).

    Unlike random_wrong_labels, about one in C draws is the true label, so those "negatives"
    equal their positives: the loss then pulls their goodness towards the threshold.
    """
    order = torch.randperm(len(labels), generator=generator, device=generator.device)
    return labels[order.to(labels.device)]


def hard_wrong_labels(scores: Tensor, labels: Tensor, temperature: float,
                      generator: torch.Generator) -> Tensor:
    """
    Wrong labels drawn with probability softmax(score / temperature) over the wrong classes.

    With `scores` the goodness the model gives each label, negatives concentrate on the labels
    the model confuses with the true one, which teaches more than a uniformly random label.
    """
    if scores.dim() != 2 or scores.shape[1] < 2:
        raise ValueError(f'scores must be (N, C) with C >= 2, got {tuple(scores.shape)}')
    if not temperature > 0:
        raise ValueError(f'temperature must be > 0, got {temperature}')
    n, num_classes = scores.shape
    _check_labels(labels, num_classes, expected_n=n)
    logits = scores.detach().to('cpu', torch.float64) / temperature
    logits[torch.arange(n), labels.cpu()] = -math.inf
    # Subtracting the row max keeps exp finite; masked labels get probability exactly 0.
    probs = torch.softmax(logits - logits.max(dim=1, keepdim=True).values, dim=1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1).to(labels.device)


def candidate_inputs(x: Tensor, num_classes: int) -> Tensor:
    """(N*C, D) sample-major: row n*C + c is sample n overlaid with label c."""
    n = x.shape[0]
    labels = torch.arange(num_classes, device=x.device).repeat(n)
    value = x.max() if n else None  # the max of x itself, however it is batched
    return overlay_labels(x.repeat_interleave(num_classes, dim=0), labels, num_classes, value)


def smooth_masks(n: int, height: int, width: int, generator: torch.Generator,
                 blur_steps: int = 10) -> Tensor:
    """Float {0,1} masks (N,1,H,W) with large coherent regions: blurred random bits > 0.5."""
    if n < 1 or height < 1 or width < 1 or blur_steps < 0:
        raise ValueError(f'smooth_masks needs positive sizes and blur_steps >= 0, got '
                         f'n={n}, height={height}, width={width}, blur_steps={blur_steps}')
    bits = torch.randint(0, 2, (n, 1, height, width), generator=generator,
                         device=generator.device).float()
    for _ in range(blur_steps):
        bits = _blur_along(_blur_along(bits, dim=3), dim=2)
    return (bits > 0.5).float()


def _blur_along(x: Tensor, dim: int) -> Tensor:
    """
    Hinton's [1/4, 1/2, 1/4] filter along one axis; slicing beats a 1-channel conv on CPU.

    Replicate padding keeps border pixels as likely to be 1 as central ones.
    """
    size = x.shape[dim]
    padded = torch.cat([x.narrow(dim, 0, 1), x, x.narrow(dim, size - 1, 1)], dim=dim)
    return 0.25 * (padded.narrow(dim, 0, size) + padded.narrow(dim, 2, size)) + 0.5 * x


def hybrid_negatives(images: Tensor, generator: torch.Generator, blur_steps: int = 10) -> Tensor:
    """
    Mix each image with a different image of the batch through a smooth mask.

    The hybrids keep short-range image statistics but lose long-range shape, so telling
    them apart from real images forces layers to learn long-range structure.
    """
    if images.dim() != 4:
        raise ValueError(f'hybrid negatives need images (N, C, H, W), got {tuple(images.shape)}')
    n, _, height, width = images.shape
    if n < 2:
        raise ValueError(f'hybrid negatives need at least 2 images to mix, got {n}')
    masks = smooth_masks(n, height, width, generator, blur_steps).to(images.device, images.dtype)
    # Rolling by 1..N-1 is a derangement: no image is mixed with itself.
    shift = int(torch.randint(1, n, (), generator=generator, device=generator.device))
    partners = images.roll(shift, dims=0)
    return masks * images + (1 - masks) * partners


def _check_labels(labels: Tensor, num_classes: int, expected_n: Optional[int] = None) -> None:
    if labels.dim() != 1 or (expected_n is not None and labels.shape[0] != expected_n):
        wanted = 'N' if expected_n is None else expected_n
        raise ValueError(f'labels must have shape ({wanted},), got {tuple(labels.shape)}')
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f'labels must be an integer tensor, got {labels.dtype}')
    if labels.numel() and bool((labels.min() < 0) | (labels.max() >= num_classes)):
        raise ValueError(f'labels must lie in [0, {num_classes}), '
                         f'got range [{int(labels.min())}, {int(labels.max())}]')


def self_contrastive_pairs(images: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """
    Return self-contrastive pairs (SCFF, Chen et al., Nat. Commun. 2025).

    Each image stacked with itself along the channels is a positive; with a different
    image of the batch, a negative. Rolling by 1..N-1 is a derangement: no negative pairs
    an image with itself.
    """
    if images.dim() != 4 or images.shape[0] < 2:
        raise ValueError('self-contrastive pairs need at least 2 images (N, C, H, W), got '
                         f'{tuple(images.shape)}')
    shift = int(torch.randint(1, images.shape[0], (), generator=generator))
    return (torch.cat([images, images], dim=1),
            torch.cat([images, images.roll(shift, dims=0)], dim=1))


def stacked_with_itself(x: Tensor, image_shape: tuple[int, ...]) -> Tensor:
    """(N, 2C, H, W) of flat or shaped images: what a self-contrastive model infers on."""
    images = x.reshape(x.shape[0], *image_shape)
    return torch.cat([images, images], dim=1)
