"""Forward-Forward layers and the layer-type registry."""
from dataclasses import dataclass
import math
from typing import Any, Callable, Mapping, Optional, Sequence

from dff_lifecycle.core.ff.input_norms import build_input_norm
import torch
from torch import nn, Tensor
import torch.nn.functional as F


class _ReluFullGrad(torch.autograd.Function):
    """ReLU forward; backward passes the gradient through where the input was negative too."""

    @staticmethod
    def forward(ctx: Any, z: Tensor) -> Tensor:  # noqa: D102
        return z.clamp(min=0)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:  # noqa: D102
        return grad


# ReLU by its backward for negative inputs (hyperparameter relu_grad): zero is torch's; full
# lets a unit that stopped firing be pushed back by its loss (Hinton's FF code does this).
RELUS: dict[str, Callable[[Tensor], Tensor]] = {'zero': F.relu, 'full': _ReluFullGrad.apply}


class ReluChoice:
    """The ReLU of a trainable FF layer, with its backward chosen by relu_grad."""

    relu_grad = 'zero'

    def set_relu_grad(self, name: str) -> None:
        """Choose ReLU's backward for negative inputs (RELUS: zero | full)."""
        if name not in RELUS:
            raise ValueError(f'relu_grad must be one of {", ".join(RELUS)}, got {name!r}')
        self.relu_grad = name

    def relu(self, z: Tensor) -> Tensor:
        return RELUS[self.relu_grad](z)


OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    'adam': torch.optim.Adam,
    'sgd': torch.optim.SGD,
}


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


def reset_linear_rows_(weight: Tensor, bias: Optional[Tensor], generator: torch.Generator,
                       rows: tuple[int, int], total_rows: int,
                       chunk_elements: int = 1 << 22) -> None:
    """
    Give `weight` (and `bias`) rows [start, stop) of a (total_rows, fan_in) reset_linear_.

    A shard of a split layer starts as that slice of the whole layer. The whole draw is
    made in blocks of rows, so memory stays that of one block.
    """
    start, stop = rows
    fan_in = weight[0].numel()
    bound = 1.0 / math.sqrt(fan_in)
    flat = weight.view(weight.shape[0], fan_in)
    step = max(1, chunk_elements // fan_in)
    with torch.no_grad():
        for first in range(0, total_rows, step):  # the draws of all rows, in order
            last = min(total_rows, first + step)
            block = torch.empty(last - first, fan_in).uniform_(-bound, bound,
                                                               generator=generator)
            low, high = max(first, start), min(last, stop)
            if low < high:
                flat[low - start:high - start] = block[low - first:high - first]
        if bias is not None:
            bias.copy_(torch.empty(total_rows).uniform_(-bound, bound,
                                                        generator=generator)[start:stop])


class FFDense(ReluChoice, nn.Module):
    """
    Fully connected FF layer: length-normalise (or core.input_norms' choice), Linear, ReLU.

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
        self.set_input_norm('length')
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

    def set_input_norm(self, name: str) -> None:
        """Choose the input normalisation (core.input_norms; 'length' by default)."""
        self.input_norm = name
        self.norm = build_input_norm(name, (self.in_features,))

    def prepare_input(self, x: Tensor) -> Tensor:
        """Compute the weight-free part of forward; many steps on one batch pay for it once."""
        return self.norm(x.flatten(1))

    def forward_prepared(self, x: Tensor) -> Tensor:
        return self.relu(F.linear(x, self.weight, self.bias))

    def extra_repr(self) -> str:
        return (f'in_features={self.in_features}, out_features={self.out_features}, '
                f'bias={self.bias is not None}, input_norm={self.input_norm}')


class FFConv2d(ReluChoice, nn.Module):
    """
    Convolutional FF layer: input normalisation, Conv2d, ReLU.

    The default input normalisation ('position') scales the input at every spatial
    position to unit root-mean-square over its channels, so the previous layer's goodness
    at that position (the mean of its squared activities) cannot pass on and only the
    direction of the channel vector counts: the convolutional form of FFDense's length
    normalisation (Hinton 2022, section 5; per-position normalisation as in the channel-wise
    FF methods). core.input_norms has the others (sample, layer, batch).
    A flat input (a supervised first layer's overlaid images) is viewed as `in_shape`.
    """

    def __init__(self, in_shape: Sequence[int], out_channels: int, kernel_size: int,
                 stride: int = 1, padding: int = 0,
                 generator: Optional[torch.Generator] = None) -> None:
        super().__init__()
        self.in_shape = tuple(int(d) for d in in_shape)
        if len(self.in_shape) != 3 or min(self.in_shape) < 1 or out_channels < 1:
            raise ValueError(f'FFConv2d needs a (C, H, W) input and out_channels >= 1, '
                             f'got in_shape={list(in_shape)}, out_channels={out_channels}')
        self.stride, self.padding = stride, padding
        self.set_input_norm('position')  # LocalTrainer sets the hyperparameters' choice
        in_channels = self.in_shape[0]
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size,
                                               kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels))
        self.reset_parameters(generator)

    def reset_parameters(self, generator: Optional[torch.Generator] = None) -> None:
        # nn.Conv2d's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = C * k * k.
        reset_linear_(self.weight.view(self.weight.shape[0], -1), self.bias, generator)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_prepared(self.prepare_input(x))

    def set_input_norm(self, name: str) -> None:
        """Choose the input normalisation (core.input_norms; 'position' by default)."""
        self.input_norm = name
        self.norm = build_input_norm(name, self.in_shape)

    def prepare_input(self, x: Tensor) -> Tensor:
        """View as (N, C, H, W) and normalise (core.input_norms)."""
        return self.norm(x.reshape(x.shape[0], *self.in_shape))

    def forward_prepared(self, x: Tensor) -> Tensor:
        return self.relu(F.conv2d(x, self.weight, self.bias, self.stride, self.padding))

    def extra_repr(self) -> str:
        c_out, _, k, _ = self.weight.shape
        return (f'in_shape={list(self.in_shape)}, out_channels={c_out}, kernel_size={k}, '
                f'stride={self.stride}, padding={self.padding}, input_norm={self.input_norm}')


class Concat(nn.Module):
    """Join several inputs along `dim` (YOLOv5's numbering: 1 = channels of (N, C, H, W))."""

    def __init__(self, dim: int = 1) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:
        return torch.cat(list(inputs), dim=self.dim)


Shape = tuple[int, ...]


@dataclass(frozen=True)
class LayerArgs:
    """Parsed YOLOv5-style args: integer args (defaults filled in), hyperparameter overrides."""

    values: tuple[int, ...]
    overrides: Mapping[str, Any]

    @property
    def out_features(self) -> int:
        """Return the first arg: FFDense's width, FFConv2d's channel count."""
        return self.values[0]


@dataclass(frozen=True)
class ArgSpec:
    """One integer arg of a layer row: its name, least value and default (None: required)."""

    name: str
    minimum: int
    default: Optional[int] = None


def _conv_size(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def _image(type_name: str, shape: Shape) -> Shape:
    if len(shape) != 3:
        raise ValueError(f'{type_name} needs a (C, H, W) input, got shape {list(shape)}: '
                         'set input_shape to an image shape, e.g. [1, 28, 28]')
    return shape


def _dense_shape(shapes: Sequence[Shape], values: tuple[int, ...]) -> Shape:
    return (values[0],)


def _conv_shape(shapes: Sequence[Shape], values: tuple[int, ...]) -> Shape:
    c, h, w = _image('FFConv2d', shapes[0])
    out_channels, kernel, stride, padding = values
    out = (out_channels, _conv_size(h, kernel, stride, padding),
           _conv_size(w, kernel, stride, padding))
    if min(out[1:]) < 1:
        raise ValueError(f'FFConv2d kernel {kernel} (stride {stride}, padding {padding}) does '
                         f'not fit a {h}x{w} input')
    return out


def _pool_shape(type_name: str) -> Callable[[Sequence[Shape], tuple[int, ...]], Shape]:
    def shape(shapes: Sequence[Shape], values: tuple[int, ...]) -> Shape:
        c, h, w = _image(type_name, shapes[0])
        kernel, stride = values[0], values[1] or values[0]
        out = (c, _conv_size(h, kernel, stride, 0), _conv_size(w, kernel, stride, 0))
        if min(out[1:]) < 1:
            raise ValueError(f'{type_name} kernel {kernel} does not fit a {h}x{w} input')
        return out
    return shape


def _flatten_shape(shapes: Sequence[Shape], values: tuple[int, ...]) -> Shape:
    return (math.prod(shapes[0]),)


def _concat_shape(shapes: Sequence[Shape], values: tuple[int, ...]) -> Shape:
    dim = values[0]
    if len(shapes) < 2:
        raise ValueError('Concat joins at least two inputs: write from as a list, e.g. [-1, 2]')
    rank = len(shapes[0])
    if not 1 <= dim <= rank:
        raise ValueError(f'Concat dim must be 1..{rank} for inputs of shape {list(shapes[0])} '
                         f'(dim 0 is the batch), got {dim}')
    axis = dim - 1
    for shape in shapes[1:]:
        if len(shape) != rank or any(a != b for i, (a, b) in enumerate(zip(shape, shapes[0]))
                                     if i != axis):
            raise ValueError(f'Concat inputs must match except along dim {dim}, got shapes '
                             f'{", ".join(str(list(s)) for s in shapes)}')
    joined = list(shapes[0])
    joined[axis] = sum(shape[axis] for shape in shapes)
    return tuple(joined)


ShapeFn = Callable[[Sequence[Shape], tuple[int, ...]], Shape]
# (input shapes, arg values, generator) -> module
ModuleFn = Callable[[Sequence[Shape], tuple[int, ...], torch.Generator], nn.Module]


@dataclass(frozen=True)
class LayerType:
    """
    One registered row type: its args, shape rule and module.

    Trainable types become FF layer nodes; the others (pools, Flatten, Concat) train
    nothing and are fused into the stage of a trainable layer (core.model_graph).
    """

    name: str
    args: tuple[ArgSpec, ...]
    shape: ShapeFn
    module: ModuleFn
    trainable: bool
    max_inputs: int = 1
    # (input shapes, arg values) -> how many parameters the module has
    count: Callable[[Sequence[Shape], tuple[int, ...]], int] = lambda _shapes, _values: 0

    def parameter_count(self, in_shapes: Sequence[Shape], args: Sequence[Any]) -> int:
        return self.count([as_shape(s) for s in in_shapes], self.parse_args(args).values)

    def usage(self) -> str:
        names = ', '.join(a.name for a in self.args)
        if self.trainable:
            return f'{self.name} args must be [{names}] or [{names}, {{overrides}}]'
        return f'{self.name} args must be [{names}]'

    def parse_args(self, args: Sequence[Any]) -> LayerArgs:
        """Validate one row's args; trailing args with defaults may be left out."""
        usage = self.usage()
        required = sum(1 for a in self.args if a.default is None)
        if not isinstance(args, (list, tuple)):
            raise ValueError(f'{usage}, got {args!r}')
        items = list(args)
        overrides: Mapping[str, Any] = {}
        if self.trainable and items and isinstance(items[-1], Mapping):
            overrides = dict(items.pop())
        elif self.trainable and len(items) > len(self.args):
            raise ValueError(f'{usage}; overrides must be a mapping, got {items[-1]!r}')
        if not required <= len(items) <= len(self.args):
            raise ValueError(f'{usage}, got {list(args)!r}')
        values = []
        for spec, value in zip(self.args, items):
            if isinstance(value, bool) or not isinstance(value, int) or value < spec.minimum:
                raise ValueError(f'{usage}; {spec.name} must be an integer >= {spec.minimum}, '
                                 f'got {value!r}')
            values.append(value)
        values += [spec.default for spec in self.args[len(items):]]  # 0: "as the kernel"
        return LayerArgs(tuple(values), overrides)

    def out_shape(self, in_shapes: Sequence[Shape], args: Sequence[Any]) -> Shape:
        """Return the output shape (no batch dim) for these input shapes; ValueError if unfit."""
        if len(in_shapes) > self.max_inputs:
            raise ValueError(f'{self.name} takes one input, got {len(in_shapes)}')
        return self.shape(in_shapes, self.parse_args(args).values)

    def build(self, in_shapes: Sequence[Shape], args: Sequence[Any],
              generator: torch.Generator) -> tuple[nn.Module, Shape]:
        parsed = self.parse_args(args)
        out_shape = self.out_shape(in_shapes, args)
        return self.module(in_shapes, parsed.values, generator), out_shape


def _dense(shapes: Sequence[Shape], values: tuple[int, ...], gen: torch.Generator) -> nn.Module:
    return FFDense(math.prod(shapes[0]), values[0], generator=gen)


def _conv(shapes: Sequence[Shape], values: tuple[int, ...], gen: torch.Generator) -> nn.Module:
    return FFConv2d(shapes[0], *values, generator=gen)


LAYER_TYPES: dict[str, LayerType] = {
    'FFDense': LayerType('FFDense', (ArgSpec('out_features', 1),), _dense_shape, _dense,
                         trainable=True,
                         count=lambda s, v: (math.prod(s[0]) + 1) * v[0]),
    'FFConv2d': LayerType(
        'FFConv2d', (ArgSpec('out_channels', 1), ArgSpec('kernel_size', 1),
                     ArgSpec('stride', 1, 1), ArgSpec('padding', 0, 0)),
        _conv_shape, _conv, trainable=True,
        count=lambda s, v: (s[0][0] * v[1] * v[1] + 1) * v[0]),
    'MaxPool2d': LayerType(
        'MaxPool2d', (ArgSpec('kernel_size', 1), ArgSpec('stride', 1, 0)),
        _pool_shape('MaxPool2d'),
        lambda _s, v, _g: nn.MaxPool2d(v[0], v[1] or v[0]), trainable=False),
    'AvgPool2d': LayerType(
        'AvgPool2d', (ArgSpec('kernel_size', 1), ArgSpec('stride', 1, 0)),
        _pool_shape('AvgPool2d'),
        lambda _s, v, _g: nn.AvgPool2d(v[0], v[1] or v[0]), trainable=False),
    'Flatten': LayerType('Flatten', (), _flatten_shape, lambda _s, _v, _g: nn.Flatten(1),
                         trainable=False),
    'Concat': LayerType('Concat', (ArgSpec('dim', 1, 1),), _concat_shape,
                        lambda _s, v, _g: Concat(v[0]), trainable=False, max_inputs=8),
}


def parse_layer_args(type_name: str, args: Sequence[Any]) -> LayerArgs:
    """Validate the args row of one layer of a registered type."""
    return get_layer_type(type_name).parse_args(args)


def get_layer_type(type_name: str) -> LayerType:
    try:
        return LAYER_TYPES[type_name]
    except KeyError:
        raise ValueError(f'unknown layer type {type_name!r} '
                         f'(known: {", ".join(LAYER_TYPES)})') from None


def as_shape(shape_or_features: int | Sequence[int]) -> Shape:
    """(n,) for a flat size n, else the shape as a tuple of ints."""
    if isinstance(shape_or_features, int):
        return (shape_or_features,)
    return tuple(int(d) for d in shape_or_features)


def build_layer(type_name: str, in_shape: int | Sequence[int], args: Sequence[Any],
                seed: int) -> tuple[nn.Module, Shape]:
    """
    Build a registered row on the CPU, initialised from `seed` so runs repeat exactly.

    Return (module, output shape without the batch dim). `in_shape` is one input's shape
    (or its flat size); build_row takes several for a Concat.
    """
    return build_row(type_name, [as_shape(in_shape)], args, seed)


def build_row(type_name: str, in_shapes: Sequence[Sequence[int]], args: Sequence[Any],
              seed: int) -> tuple[nn.Module, Shape]:
    generator = torch.Generator().manual_seed(seed)
    return get_layer_type(type_name).build([as_shape(s) for s in in_shapes], args, generator)
