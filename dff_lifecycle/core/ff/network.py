"""A whole FF model in one process: one LocalTrainer per stage, wired as the rows say."""
import time
from typing import Any, Optional, Protocol, Sequence, Union

from dff_lifecycle.core.ff.layers import build_row
from dff_lifecycle.core.ff.local_trainer import LocalTrainer, StepResult
from dff_lifecycle.core.hyperparams import FFHyperParams
from dff_lifecycle.core.stage.model_graph import group_stages, Stage
from dff_lifecycle.core.stage.stage_ops import StageOps
import torch
from torch import nn, Tensor

MODEL_INPUT = -1  # source_index of layers that read the model input


class LayerSpec(Protocol):
    """What FFNetwork reads from a resolved layer (config.LayerSpecConfig has these fields)."""

    @property
    def index(self) -> int: ...
    @property
    def source_index(self) -> int: ...
    @property
    def module(self) -> str: ...
    @property
    def args(self) -> Sequence[Any]: ...
    @property
    def in_features(self) -> int: ...
    @property
    def out_features(self) -> int: ...
    @property
    def hparams(self) -> FFHyperParams: ...
    @property
    def seed(self) -> int: ...
    @property
    def sources(self) -> Sequence[int]: ...
    @property
    def in_shape(self) -> Sequence[int]: ...
    @property
    def out_shape(self) -> Sequence[int]: ...


class FFNetwork(nn.Module):
    """
    Stages train greedily: each gets its inputs' detached outputs of the same batch.

    One trainer per stage (a trainable row and its fused pools, Flatten or Concat; see
    core.model_graph). Build it on its final device; its optimizers hold state on that
    device, so do not `.to()` the network afterwards.
    """

    def __init__(self, layer_specs: Sequence[LayerSpec],
                 device: Union[str, torch.device] = 'cpu',
                 stages: Optional[Sequence[Stage]] = None) -> None:
        super().__init__()
        self.specs: tuple[LayerSpec, ...] = tuple(layer_specs)
        if not self.specs:
            raise ValueError('an FF network needs at least one layer')
        for position, spec in enumerate(self.specs):
            _check_wiring(position, spec, self.specs)
        self.stages: tuple[Stage, ...] = tuple(
            stages if stages is not None
            else group_stages(self.specs, tuple(self.specs[0].in_shape)))
        self.device = torch.device(device)
        self.trainers: list[LocalTrainer] = []
        self.ops: list[StageOps] = []
        for stage in self.stages:
            spec = self.specs[stage.index]
            # spec.seed is already per layer (config: training seed * 1000 + row index).
            layer, out_shape = build_row(spec.module, [stage.in_shape], spec.args, spec.seed)
            if tuple(out_shape) != tuple(spec.out_shape):
                raise ValueError(f'layers[{stage.index}]: {spec.module} builds outputs of shape '
                                 f'{list(out_shape)}, but the spec says {list(spec.out_shape)}')
            self.trainers.append(LocalTrainer(layer, spec.hparams, self.device))
            self.ops.append(StageOps.of(stage))
        self._position = {stage.index: i for i, stage in enumerate(self.stages)}
        # Registered here too so .state_dict()/.parameters() see every layer.
        self.layers = nn.ModuleList(trainer.layer for trainer in self.trainers)

    @classmethod
    def from_model_config(cls, model_cfg: Any,
                          device: Union[str, torch.device] = 'cpu') -> 'FFNetwork':
        """Build from a parsed config.ModelConfig (its resolved `layers` and `stages`)."""
        return cls(model_cfg.layers, device, getattr(model_cfg, 'stages', None))

    @property
    def goodness_reductions(self) -> list[str]:
        return [trainer.hparams.goodness for trainer in self.trainers]

    def stage_inputs(self, position: int, outputs: dict[int, Any], model_input: Any) -> list:
        """Return the inputs of stage `position`: the model input or earlier stages' outputs."""
        return [model_input if source == MODEL_INPUT else outputs[source]
                for source in self.stages[position].inputs]

    def train_stage(self, position: int, inputs_pos: Sequence[Tensor],
                    inputs_neg: Sequence[Tensor], steps: int = 1) -> tuple[StepResult, Tensor,
                                                                           Tensor]:
        """Train one stage; return its step result and its outputs (after its post-ops)."""
        ops = self.ops[position]
        result = self.trainers[position].step(ops.join(inputs_pos), ops.join(inputs_neg), steps)
        return result, ops.post(result.h_pos), ops.post(result.h_neg)

    def train_batch_classes(self, x: Tensor, y: Tensor, steps: int = 1,
                            seconds: Optional[list[float]] = None) -> list[StepResult]:
        """Train every class_groups stage in order on one labelled batch."""
        results: list[StepResult] = []
        outputs: dict[int, Tensor] = {}
        for position, stage in enumerate(self.stages):
            started = time.perf_counter()
            ops = self.ops[position]
            joined = ops.join(self.stage_inputs(position, outputs, x))
            result = self.trainers[position].step_classes(joined, y, steps)
            outputs[stage.index] = ops.post(result.h_pos)
            results.append(result)
            if seconds is not None:
                seconds.append(time.perf_counter() - started)
        return results

    def train_batch(self, x_pos: Tensor, x_neg: Tensor, steps: int = 1,
                    seconds: Optional[list[float]] = None) -> list[StepResult]:
        """
        Train every stage in order on one batch; returns one StepResult per stage.

        `seconds`, when given, gets each stage's wall time appended (core.stage_costs).
        """
        results: list[StepResult] = []
        outputs: dict[int, tuple[Tensor, Tensor]] = {}
        for position, stage in enumerate(self.stages):
            started = time.perf_counter()
            sources = self.stage_inputs(position, outputs, (x_pos, x_neg))
            result, out_pos, out_neg = self.train_stage(
                position, [pos for pos, _ in sources], [neg for _, neg in sources], steps)
            outputs[stage.index] = (out_pos, out_neg)
            results.append(result)
            if seconds is not None:
                seconds.append(time.perf_counter() - started)
        return results

    @torch.no_grad()
    def activities(self, x: Tensor) -> list[Optional[Tensor]]:
        """
        Every row's output for input x, without gradients; index by row.

        A trainable row's entry is its own activity (its goodness); its post-op rows hold
        the pooled outputs, the last of which the stage sends on. Concat rows, fused into
        their readers, hold None.
        """
        rows: list[Optional[Tensor]] = [None] * len(self.specs)
        outputs: dict[int, Tensor] = {}
        for position, stage in enumerate(self.stages):
            ops = self.ops[position]
            h = self.trainers[position].infer(ops.join(self.stage_inputs(position, outputs, x)))
            rows[stage.index] = h
            for op, out in zip(stage.post_ops, ops.post_rows(h)):
                rows[op.index] = h = out
            outputs[stage.index] = h
        return rows

    def position_of(self, index: int) -> int:
        """Position in self.stages of the stage headed by row `index`."""
        return self._position[index]


def _check_wiring(position: int, spec: LayerSpec, specs: Sequence[LayerSpec]) -> None:
    if spec.index != position:
        raise ValueError(f'layers[{position}] has index {spec.index}; specs must be in order')
    for source in spec.sources:
        if source != MODEL_INPUT and not 0 <= source < position:
            raise ValueError(f'layers[{position}]: sources must be {MODEL_INPUT} (model input) '
                             f'or earlier layers, got {source}')
    source = spec.source_index
    if (len(spec.sources) == 1 and source != MODEL_INPUT
            and specs[source].out_features != spec.in_features):
        raise ValueError(f'layers[{position}]: in_features {spec.in_features} does not match '
                         f'layers[{source}] out_features {specs[source].out_features}')
