"""
A trained model's predictions in this process, from a folder of layer weight files.

The folder is what training leaves: `dff_train --out DIR` (DIR/weights/<model>/), a
server container's weight_dir (DIR/<model>/), or the model folder itself
(layer_<i>.pt). Scores are the ones evaluation compares (core.evaluation), so a
prediction here equals the offline evaluation of the same image.
"""
from __future__ import annotations

from pathlib import Path

from dff_lifecycle.core.config import ModelConfig
from dff_lifecycle.core.data.input_stats import InputStats, InputStatsError, load_input_stats
from dff_lifecycle.core.data.input_stats import stats_path
from dff_lifecycle.core.ff.network import FFNetwork
from dff_lifecycle.core.run.evaluation import supervised_scores
from dff_lifecycle.core.run.weights import load_state, WeightFileError
import torch
from torch import Tensor


class PredictorError(ValueError):
    """Weights or statistics that cannot serve the model; one line naming the path."""


def model_weight_dir(weights: str | Path, model: str) -> Path:
    """Return the folder holding `layer_<i>.pt` of `model` under `weights` (module doc)."""
    root = Path(weights).expanduser()
    if not root.is_dir():
        raise PredictorError(f'weights: {root} is not a folder (give the folder dff_train --out '
                             'or a server container wrote the weights to)')
    for candidate in (root / model, root / 'weights' / model, root):
        if (candidate / 'layer_0.pt').is_file() or any(candidate.glob('layer_*.pt')):
            return candidate
    raise PredictorError(f'weights: no layer_<i>.pt of model {model!r} under {root} (looked '
                         f'in {root / model}, {root / "weights" / model} and {root})')


def load_stats(folder: Path, fallback: InputStats | None = None) -> InputStats:
    """Return the input statistics saved beside the weights, else `fallback`."""
    path = stats_path(folder)
    if path.is_file() or fallback is None:
        try:
            return load_input_stats(path)
        except InputStatsError as exc:
            raise PredictorError(f'{exc} (training writes it beside the weights; with the '
                                 'dataset at hand the statistics are measured instead)') from None
    return fallback


class LocalPredictor:
    """Class scores of a supervised model whose layers run here."""

    def __init__(self, model_cfg: ModelConfig, folder: Path,
                 device: torch.device | str = 'cpu') -> None:
        if not model_cfg.supervised:
            raise PredictorError(f'{model_cfg.name}: only supervised models can be served (an '
                                 "unsupervised model's head is trained at evaluation and not "
                                 'saved)')
        self.model_cfg = model_cfg
        self.network = FFNetwork.from_model_config(model_cfg, device)
        for stage, trainer in zip(self.network.stages, self.network.trainers):
            path = folder / f'layer_{stage.index}.pt'
            try:
                trainer.load_state_dict(load_state(path))
            except (WeightFileError, ValueError) as exc:
                raise PredictorError(f'layer {stage.index}: {exc}'.replace('\n', ' ')) from None

    def scores(self, x: Tensor) -> Tensor:
        """(N, num_classes) scores of a batch of model inputs; the class is their argmax."""
        return supervised_scores(self.network.activities, x, self.model_cfg)
