"""
Data augmentation of training images: rotations, scalings, crops and flips.

Drawn from the run's generator, so the single process and the distributed master (which
draw batches the same way, core.batches) train on the very same augmented images.
Pure torch.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor


def random_crop(images: Tensor, padding: int, generator: torch.Generator) -> Tensor:
    """Pad (N, C, H, W) by `padding` zeros on each side and cut a random H x W window each."""
    if padding <= 0:
        return images
    n, _c, h, w = images.shape
    padded = torch.nn.functional.pad(images, (padding, padding, padding, padding))
    top = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    left = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    rows = (top[:, None] + torch.arange(h))[:, :, None]      # (N, H, 1)
    cols = (left[:, None] + torch.arange(w))[:, None, :]     # (N, 1, W)
    picked = padded[torch.arange(n)[:, None, None], :, rows, cols]  # (N, H, W, C)
    return picked.permute(0, 3, 1, 2).contiguous()


def random_affine(images: Tensor, max_degrees: float, max_scale: float,
                  generator: torch.Generator) -> Tensor:
    """
    Rotate and scale each (N, C, H, W) image about its centre, at random.

    The angle is uniform in +-max_degrees, the factor uniform in 1 +- max_scale (bilinear;
    what leaves the frame is lost, what enters it is zero, as a crop's padding).
    """
    if max_degrees <= 0 and max_scale <= 0:
        return images
    n = images.shape[0]
    angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(max_degrees)
    scale = 1 + (torch.rand(n, generator=generator) * 2 - 1) * max_scale
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    zero = torch.zeros(n)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1),
                         torch.stack([sin, cos, zero], 1)], 1).to(images.dtype)
    grid = torch.nn.functional.affine_grid(theta, list(images.shape), align_corners=False)
    return torch.nn.functional.grid_sample(images, grid, mode='bilinear', padding_mode='zeros',
                                           align_corners=False)


def random_flip(images: Tensor, generator: torch.Generator) -> Tensor:
    """Mirror each (N, C, H, W) image left to right with probability 1/2."""
    flip = torch.rand(images.shape[0], generator=generator) < 0.5
    out = images.clone()
    out[flip] = images[flip].flip(-1)
    return out


def augment(x: Tensor, image_shape: Sequence[int], crop_padding: int, flip: bool,
            generator: torch.Generator, rotate_degrees: float = 0.0,
            scale: float = 0.0) -> Tensor:
    """Return x (flat or (N, C, H, W)) augmented as configured, in x's shape."""
    if crop_padding <= 0 and not flip and rotate_degrees <= 0 and scale <= 0:
        return x
    images = x.reshape(x.shape[0], *image_shape)
    images = random_affine(images, rotate_degrees, scale, generator)
    images = random_crop(images, crop_padding, generator)
    if flip:
        images = random_flip(images, generator)
    return images.reshape(x.shape)
