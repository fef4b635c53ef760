"""A whole FF model in one process: one LocalTrainer per layer, wired by `source_index`."""
from typing import Any, Protocol, Sequence, Union

from dff_lifecycle.core.ff_layers import build_layer
from dff_lifecycle.core.hyperparams import FFHyperParams
from dff_lifecycle.core.local_trainer import LocalTrainer, StepResult
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


class FFNetwork(nn.Module):
    """
    Layers train greedily: each gets its source layer's detached output of the same batch.

    Build it on its final device; its optimizers hold state on that device, so do not
    `.to()` the network afterwards.
    """

    def __init__(self, layer_specs: Sequence[LayerSpec],
                 device: Union[str, torch.device] = 'cpu') -> None:
        super().__init__()
        self.specs: tuple[LayerSpec, ...] = tuple(layer_specs)
        if not self.specs:
            raise ValueError('an FF network needs at least one layer')
        self.device = torch.device(device)
        self.trainers: list[LocalTrainer] = []
        for position, spec in enumerate(self.specs):
            _check_wiring(position, spec, self.specs)
            # spec.seed is already per layer (config: training seed * 1000 + layer index).
            layer, out_features = build_layer(spec.module, spec.in_features, spec.args, spec.seed)
            if out_features != spec.out_features:
                raise ValueError(f'layers[{position}]: {spec.module} builds {out_features} '
                                 f'outputs, but the spec says {spec.out_features}')
            self.trainers.append(LocalTrainer(layer, spec.hparams, self.device))
        # Registered here too so .state_dict()/.parameters() see every layer.
        self.layers = nn.ModuleList(trainer.layer for trainer in self.trainers)

    @classmethod
    def from_model_config(cls, model_cfg: Any,
                          device: Union[str, torch.device] = 'cpu') -> 'FFNetwork':
        """Build from a parsed config.ModelConfig (its resolved `layers`)."""
        return cls(model_cfg.layers, device)

    @property
    def goodness_reductions(self) -> list[str]:
        return [trainer.hparams.goodness for trainer in self.trainers]

    def train_batch(self, x_pos: Tensor, x_neg: Tensor, steps: int = 1) -> list[StepResult]:
        """Train every layer in order on one batch; returns one StepResult per layer."""
        results: list[StepResult] = []
        for spec, trainer in zip(self.specs, self.trainers):
            if spec.source_index == MODEL_INPUT:
                source_pos, source_neg = x_pos, x_neg
            else:
                source = results[spec.source_index]
                source_pos, source_neg = source.h_pos, source.h_neg
            results.append(trainer.step(source_pos, source_neg, steps))
        return results

    @torch.no_grad()
    def activities(self, x: Tensor) -> list[Tensor]:
        """Every layer's output for input x, without gradients."""
        outputs: list[Tensor] = []
        for spec, trainer in zip(self.specs, self.trainers):
            source = x if spec.source_index == MODEL_INPUT else outputs[spec.source_index]
            outputs.append(trainer.infer(source))
        return outputs


def _check_wiring(position: int, spec: LayerSpec, specs: Sequence[LayerSpec]) -> None:
    if spec.index != position:
        raise ValueError(f'layers[{position}] has index {spec.index}; specs must be in order')
    source = spec.source_index
    if source != MODEL_INPUT and not 0 <= source < position:
        raise ValueError(f'layers[{position}]: source_index must be {MODEL_INPUT} (model input) '
                         f'or an earlier layer, got {source}')
    if source != MODEL_INPUT and specs[source].out_features != spec.in_features:
        raise ValueError(f'layers[{position}]: in_features {spec.in_features} does not match '
                         f'layers[{source}] out_features {specs[source].out_features}')
