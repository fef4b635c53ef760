"""Forward-Forward layers and the layer-type registry."""
from dataclasses import dataclass
import math
from typing import Any, Callable, Mapping, Optional, Sequence

import torch
from torch import nn, Tensor
import torch.nn.functional as F

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    'adam': torch.optim.Adam,
    'sgd': torch.optim.SGD,
}

# Keeps the direction of an all-zero input finite instead of dividing by zero.
_NORM_EPS = 1e-8


def reset_linear_(weight: Tensor, bias: Optional[Tensor],
                  generator: Optional[torch.Generator]) -> None:
    """
    nn.Linear's default init U(-1/sqrt(fan_in), 1/sqrt(fan_in)), drawn from `generator`.

    Drawing from an explicit generator makes a seed reproduce the same weights without
    touching (or depending on) the global RNG.
    """
    bound = 1.0 / math.sqrt(weight.shape[1])
    with torch.no_grad():
        weight.uniform_(-bound, bound, generator=generator)
        if bias is not None:
            bias.uniform_(-bound, bound, generator=generator)


class FFDense(nn.Module):
    """
    Fully connected FF layer: length-normalise, Linear, ReLU.

    Normalising the input hides the previous layer's goodness (the vector length) so
    this layer must use the direction of the activity, as in Hinton (2022).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 generator: Optional[torch.Generator] = None) -> None:
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise ValueError(f'FFDense needs positive sizes, got in_features={in_features}, '
                             f'out_features={out_features}')
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        if bias:
            self.bias = nn.Parameter(torch.empty(out_features))
        else:
            self.register_parameter('bias', None)
        self.reset_parameters(generator)

    def reset_parameters(self, generator: Optional[torch.Generator] = None) -> None:
        reset_linear_(self.weight, self.bias, generator)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_prepared(self.prepare_input(x))

    @staticmethod
    def prepare_input(x: Tensor) -> Tensor:
        """Compute the parameter-free part of forward; many steps on one batch pay for it once."""
        x = x.flatten(1)
        return x / (x.norm(p=2, dim=1, keepdim=True) + _NORM_EPS)

    def forward_prepared(self, x: Tensor) -> Tensor:
        return F.relu(F.linear(x, self.weight, self.bias))

    def extra_repr(self) -> str:
        return (f'in_features={self.in_features}, out_features={self.out_features}, '
                f'bias={self.bias is not None}')


@dataclass(frozen=True)
class LayerArgs:
    """Parsed YOLOv5-style args: `[out_features]` or `[out_features, {overrides}]`."""

    out_features: int
    overrides: Mapping[str, Any]


def parse_layer_args(type_name: str, args: Sequence[Any]) -> LayerArgs:
    """Validate the args row of one layer; overrides are hyperparameter overrides."""
    usage = f'{type_name} args must be [out_features] or [out_features, {{overrides}}]'
    if not isinstance(args, (list, tuple)) or len(args) not in (1, 2):
        raise ValueError(f'{usage}, got {args!r}')
    out_features = args[0]
    if isinstance(out_features, bool) or not isinstance(out_features, int) or out_features < 1:
        raise ValueError(f'{usage}; out_features must be a positive int, got {out_features!r}')
    overrides = args[1] if len(args) == 2 else {}
    if not isinstance(overrides, Mapping):
        raise ValueError(f'{usage}; overrides must be a mapping, got {overrides!r}')
    return LayerArgs(out_features, dict(overrides))


LayerFactory = Callable[[int, int, torch.Generator], nn.Module]


@dataclass(frozen=True)
class LayerType:
    """How to build one registered layer type from `(in_features, args)`."""

    name: str
    factory: LayerFactory  # (in_features, out_features, generator) -> module

    def parse_args(self, args: Sequence[Any]) -> LayerArgs:
        return parse_layer_args(self.name, args)

    def build(self, in_features: int, args: Sequence[Any],
              generator: torch.Generator) -> tuple[nn.Module, int]:
        parsed = self.parse_args(args)
        module = self.factory(in_features, parsed.out_features, generator)
        return module, parsed.out_features


LAYER_TYPES: dict[str, LayerType] = {
    'FFDense': LayerType('FFDense', lambda n_in, n_out, gen: FFDense(n_in, n_out, generator=gen)),
}


def get_layer_type(type_name: str) -> LayerType:
    try:
        return LAYER_TYPES[type_name]
    except KeyError:
        raise ValueError(f'unknown layer type {type_name!r} '
                         f'(known: {", ".join(LAYER_TYPES)})') from None


def build_layer(type_name: str, in_features: int, args: Sequence[Any],
                seed: int) -> tuple[nn.Module, int]:
    """Build a registered layer on the CPU, initialised from `seed` so runs repeat exactly."""
    generator = torch.Generator().manual_seed(seed)
    return get_layer_type(type_name).build(in_features, args, generator)
