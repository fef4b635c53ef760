"""
The parameter-free work fused around a stage's trainable layer.

It joins the stage's inputs (a Concat) and runs the rows after the join (pre-ops)
before the layer, and its pools and Flatten after it (core.model_graph).

Pure torch. The single process (core.network) and the layer nodes (core.layer_stage)
both run a stage through this, so the two compute the same tensors.
"""
from __future__ import annotations

from typing import Sequence

from dff_lifecycle.core.ff.layers import build_row
from dff_lifecycle.core.stage.model_graph import Stage
import torch
from torch import nn, Tensor


class StageOps:
    """Join a stage's inputs and run its post-ops."""

    def __init__(self, input_shapes: Sequence[Sequence[int]], concat_dim: int,
                 post_ops: Sequence[nn.Module], pre_ops: Sequence[nn.Module] = ()) -> None:
        self.input_shapes = [tuple(int(d) for d in shape) for shape in input_shapes]
        self.concat_dim = concat_dim
        self.post_ops = list(post_ops)
        self.pre_ops = list(pre_ops)

    @classmethod
    def of(cls, stage: Stage) -> 'StageOps':
        """Build the post-op modules of `stage` (they hold no parameters, so no seed matters)."""
        joined = joined_shape(stage.input_shapes, stage.concat_dim)
        return cls(stage.input_shapes, stage.concat_dim,
                   chain_modules([(op.module, op.args) for op in stage.post_ops],
                                 stage.raw_shape),
                   chain_modules([(op.module, op.args) for op in stage.pre_ops], joined))

    @property
    def inputs(self) -> int:
        return len(self.input_shapes)

    def join(self, inputs: Sequence[Tensor]) -> Tensor:
        """Return the one input as is, or several viewed in their shapes and concatenated."""
        if len(inputs) != self.inputs:
            raise ValueError(f'this stage joins {self.inputs} inputs, got {len(inputs)}')
        if self.inputs == 1:
            return inputs[0]
        shaped = [x.reshape(x.shape[0], *shape) for x, shape in zip(inputs, self.input_shapes)]
        joined = torch.cat(shaped, dim=self.concat_dim)
        for module in self.pre_ops:
            joined = module(joined)
        return joined

    def post(self, h: Tensor) -> Tensor:
        for module in self.post_ops:
            h = module(h)
        return h

    def post_rows(self, h: Tensor) -> list[Tensor]:
        """Every post-op's output in order (the single process keeps each row's output)."""
        outputs = []
        for module in self.post_ops:
            h = module(h)
            outputs.append(h)
        return outputs


def joined_shape(input_shapes: Sequence[Sequence[int]], concat_dim: int) -> tuple[int, ...]:
    """Shape of the inputs concatenated along concat_dim (1: the first non-batch dim)."""
    shape = [int(d) for d in input_shapes[0]]
    if len(input_shapes) > 1:
        shape[concat_dim - 1] = sum(int(s[concat_dim - 1]) for s in input_shapes)
    return tuple(shape)


def chain_modules(ops: Sequence[tuple[str, Sequence[int]]],
                  in_shape: Sequence[int]) -> list[nn.Module]:
    """Build a chain of parameter-free rows (type, args), each reading the one before."""
    modules, shape = [], tuple(in_shape)
    for name, args in ops:
        module, shape = build_row(name, [shape], list(args), seed=0)
        modules.append(module)
    return modules
