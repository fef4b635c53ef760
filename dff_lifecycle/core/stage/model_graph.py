"""
A model's rows grouped into stages: the units that train, and run as layer nodes.

A model config lists YOLOv5-style rows. Trainable rows (FFDense, FFConv2d) each head a
stage; the parameter-free rows are fused into stages, so no tensor crosses the network
twice for them:

- pools and Flatten after a trainable row run as that stage's post-ops, on the stage's
  output. The stage's goodness is that of its trainable row (before the post-ops), and
  what it sends on (and reports as features) is the end of the chain, so pooling shrinks
  what travels. A post-op chain is linear: each row reads the row before it, and only
  the end of a chain may be read by other rows;
- a Concat joins the outputs of several stages and is fused into the stage that reads
  it: that stage gets one input per joined source. Parameter-free rows after a Concat
  (a Flatten, a pool) run fused too, in the reader's stage, between the join and its
  layer (its pre-ops): Concat -> Flatten -> FFDense is one stage.

Pure Python; `rows` are config.LayerSpecConfig (anything with the fields used here).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from dff_lifecycle.core.ff.layers import LAYER_TYPES

MODEL_INPUT = -1


class GraphError(ValueError):
    """A model whose rows cannot be grouped; `row` is the offending row index."""

    def __init__(self, row: int, problem: str) -> None:
        super().__init__(problem)
        self.row = row


@dataclass(frozen=True)
class PostOp:
    """One parameter-free row run after a stage's trainable layer."""

    index: int
    module: str
    args: tuple[Any, ...]
    out_shape: tuple[int, ...]


@dataclass(frozen=True)
class Stage:
    """
    One trainable row with what is fused around it.

    `inputs` are the stages (by their trainable row's index, or MODEL_INPUT) whose outputs
    it reads, joined along `concat_dim` when there are several. `output_row` is the row
    whose output the stage sends on.
    """

    index: int
    inputs: tuple[int, ...]
    concat_dim: int
    in_shape: tuple[int, ...]
    input_shapes: tuple[tuple[int, ...], ...]
    raw_shape: tuple[int, ...]
    post_ops: tuple[PostOp, ...]
    pre_ops: tuple[PostOp, ...] = ()  # run on the joined inputs, before the layer

    @property
    def out_shape(self) -> tuple[int, ...]:
        return self.post_ops[-1].out_shape if self.post_ops else self.raw_shape

    @property
    def output_row(self) -> int:
        return self.post_ops[-1].index if self.post_ops else self.index


def group_stages(rows: Sequence[Any], input_shape: tuple[int, ...]) -> tuple[Stage, ...]:
    """Group resolved rows into stages, refusing wirings that cannot be fused."""
    owner: dict[int, int] = {}        # row -> the stage (trainable row index) it belongs to
    chain_end: dict[int, int] = {}    # stage -> the row its chain ends at so far
    concat_of: dict[int, Any] = {}    # Concat row -> the row
    pre_chain: dict[int, tuple[int, tuple[PostOp, ...]]] = {}  # row after a Concat -> both
    readers: dict[int, list[int]] = {}
    for row in rows:
        for source in row.sources:
            readers.setdefault(source, []).append(row.index)
    stages: dict[int, dict] = {}
    for row in rows:
        kind = LAYER_TYPES[row.module]
        if kind.trainable:
            stages[row.index] = _trainable_stage(row, rows, owner, chain_end, concat_of,
                                                 pre_chain, input_shape)
            owner[row.index] = chain_end[row.index] = row.index
        elif row.module == 'Concat':
            for source in row.sources:
                _require_stage_output(row, source, owner, chain_end, rows)
            concat_of[row.index] = row
        elif row.sources[0] in concat_of or row.sources[0] in pre_chain:
            source = row.sources[0]
            concat, ops = pre_chain.get(source, (source, ()))
            pre_chain[row.index] = (concat, (*ops, PostOp(row.index, row.module,
                                                          tuple(row.args),
                                                          tuple(row.out_shape))))
        else:
            _attach_post_op(row, rows, owner, chain_end, stages)
    for index in (*concat_of, *pre_chain):
        if not readers.get(index):  # a chain's readers are trainable rows or chain rows
            what = 'Concat' if index in concat_of else rows[index].module
            raise GraphError(index, f'nothing reads this {what}: it is fused into the '
                             'trainable layers that read it')
    for stage_index, body in stages.items():
        ends = chain_end[stage_index]
        for row_index, found in owner.items():
            if found != stage_index or row_index == ends:
                continue
            outside = [r for r in readers.get(row_index, []) if owner.get(r) != stage_index]
            if outside:
                raise GraphError(outside[0], f'reads row {row_index}, the middle of the '
                                 f'stage of layer {stage_index} (its rows {stage_index}..'
                                 f'{ends} run fused): read row {ends}, where it ends')
    return tuple(Stage(post_ops=tuple(b.pop('post_ops')), **b) for b in stages.values())


def _trainable_stage(row: Any, rows: Sequence[Any], owner: Mapping[int, int],
                     chain_end: Mapping[int, int], concat_of: Mapping[int, Any],
                     pre_chain: Mapping[int, tuple[int, tuple[PostOp, ...]]],
                     input_shape: tuple[int, ...]) -> dict:
    if len(row.sources) != 1:
        raise GraphError(row.index, f'{row.module} reads one row; join several with a Concat '
                         'row and read that')
    source = row.sources[0]
    pre_ops: tuple[PostOp, ...] = ()
    if source in pre_chain:
        source, pre_ops = pre_chain[source]
    if source in concat_of:
        concat = concat_of[source]
        inputs = tuple(owner.get(s, MODEL_INPUT) if s >= 0 else MODEL_INPUT
                       for s in concat.sources)
        shapes = tuple(_shape_of(s, rows, input_shape) for s in concat.sources)
        dim = int(concat.args[0]) if concat.args else 1
    else:
        if source != MODEL_INPUT:
            _require_stage_output(row, source, owner, chain_end, rows)
        inputs = (owner[source] if source >= 0 else MODEL_INPUT,)
        shapes = (_shape_of(source, rows, input_shape),)
        dim = 1
    return {'index': row.index, 'inputs': inputs, 'concat_dim': dim,
            'in_shape': tuple(row.in_shape), 'input_shapes': shapes,
            'raw_shape': tuple(row.out_shape), 'post_ops': [], 'pre_ops': pre_ops}


def _attach_post_op(row: Any, rows: Sequence[Any], owner: dict, chain_end: dict,
                    stages: Mapping[int, dict]) -> None:
    source = row.sources[0]
    if source == MODEL_INPUT or source not in owner:
        what = ('the model input' if source == MODEL_INPUT
                else f'row {source} ({rows[source].module})')
        raise GraphError(row.index, f'{row.module} trains nothing, so it runs fused after a '
                         f'trainable layer; it reads {what}. Shape the input with input_shape, '
                         'or put the row after an FFDense or FFConv2d row')
    stage = owner[source]
    if chain_end[stage] != source:
        raise GraphError(row.index, f'reads row {source}, but the stage of layer {stage} '
                         f'already continues at row {chain_end[stage]}: its post-ops form '
                         'one chain')
    stages[stage]['post_ops'].append(PostOp(row.index, row.module, tuple(row.args),
                                            tuple(row.out_shape)))
    owner[row.index] = stage
    chain_end[stage] = row.index


def _require_stage_output(row: Any, source: int, owner: Mapping[int, int],
                          chain_end: Mapping[int, int], rows: Sequence[Any]) -> None:
    if source == MODEL_INPUT:
        return
    if source not in owner:
        raise GraphError(row.index, f'reads row {source} ({rows[source].module}), which is '
                         'fused into the layers that read it; read a stage output instead')
    stage = owner[source]
    if chain_end[stage] != source:
        raise GraphError(row.index, f'reads row {source}, the middle of the stage of layer '
                         f'{stage}: read row {chain_end[stage]}, where it ends')


def _shape_of(source: int, rows: Sequence[Any], input_shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(input_shape) if source == MODEL_INPUT else tuple(rows[source].out_shape)
