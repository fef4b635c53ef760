"""
What an FF layer does to its input before its weights: the input normalisations.

FF layers normalise their input so the previous layer's goodness (the size of its
activity) cannot pass on and this layer must use its direction (Hinton 2022). Each entry
builds a module for an input of a given shape (no batch dim); pure torch:

- length: the whole input to unit L2 length (FFDense's, as in the paper);
- position: each spatial position's channel vector to unit RMS (FFConv2d's);
- sample: the whole input to unit RMS: keeps intensities and the spatial pattern, so a
  first conv layer sees the picture (position reduces a grey image to signs);
- layer: zero mean and unit variance over the whole input (LayerNorm without its affine
  parameters, as DeeperForward pairs with mean goodness);
- batch: BatchNorm without affine parameters: batch statistics while training, running
  statistics at inference; those are buffers, so they are saved in the layer's weight
  file and restored at configure with the weights.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

from torch import nn, Tensor

EPS = 1e-8


class LengthNorm(nn.Module):
    """The whole input to unit L2 length."""

    def forward(self, x: Tensor) -> Tensor:
        flat = x.flatten(1)
        return (flat / (flat.norm(p=2, dim=1, keepdim=True) + EPS)).view_as(x)


class PositionRMS(nn.Module):
    """Each position's channel vector to unit RMS (dim 1; a flat input: the whole vector)."""

    def forward(self, x: Tensor) -> Tensor:
        return x / (x.square().mean(dim=1, keepdim=True).sqrt() + EPS)


class SampleRMS(nn.Module):
    """The whole input to unit RMS."""

    def forward(self, x: Tensor) -> Tensor:
        rms = x.flatten(1).square().mean(dim=1).sqrt()
        return x / (rms.view(-1, *([1] * (x.dim() - 1))) + EPS)


class LayerStandardise(nn.Module):
    """Zero mean and unit variance over the whole input (LayerNorm, no affine)."""

    def forward(self, x: Tensor) -> Tensor:
        flat = x.flatten(1)
        mean = flat.mean(dim=1, keepdim=True)
        std = flat.var(dim=1, unbiased=False, keepdim=True).add(1e-5).sqrt()
        return ((flat - mean) / std).view_as(x)


def _batch_norm(shape: Sequence[int]) -> nn.Module:
    if len(shape) == 3:
        return nn.BatchNorm2d(shape[0], affine=False)
    return nn.BatchNorm1d(math.prod(shape), affine=False)


INPUT_NORMS: dict[str, Callable[[Sequence[int]], nn.Module]] = {
    'length': lambda _shape: LengthNorm(),
    'position': lambda _shape: PositionRMS(),
    'sample': lambda _shape: SampleRMS(),
    'layer': lambda _shape: LayerStandardise(),
    'batch': _batch_norm,
}


def build_input_norm(name: str, in_shape: Sequence[int]) -> nn.Module:
    """Return the registered normalisation `name` for inputs of in_shape; ValueError if unknown."""
    try:
        factory = INPUT_NORMS[name]
    except KeyError:
        raise ValueError(f'unknown input_norm {name!r} (known: {", ".join(INPUT_NORMS)})') \
            from None
    return factory(tuple(in_shape))
