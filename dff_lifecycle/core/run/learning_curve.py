"""
The learning curve: test accuracy every `training.curve_every` epochs, against training time.

One class for both kinds of run: a one-process run scores with its own layers, the master
through the deployed ones (`scores`, as the final evaluation scores). Pure, no ROS.
"""
from __future__ import annotations

from pathlib import Path
import time
from typing import Callable, Optional

from dff_lifecycle.core.config import ModelConfig
from dff_lifecycle.core.data.datasets import Dataset
from dff_lifecycle.core.ff.scoring import accuracy, predict_labels
from dff_lifecycle.core.run.metrics import write_curve
from torch import Tensor

ScoresFn = Callable[[Tensor, str], Tensor]  # (images, tag) -> (N, C) class scores


class LearningCurve:
    """
    Scores the first `curve_samples` test images after every `curve_every` epochs.

    The time of a point is training time only (the curve's own passes left out), so the
    plot reads as accuracy against what training cost. With an output folder the points
    are written to curve.json after each one, so a run cut short keeps its curve.
    """

    def __init__(self, model_cfg: ModelConfig, dataset: Dataset, scores: ScoresFn,
                 out_dir: Optional[Path], log: Callable[[str], None]) -> None:
        training = model_cfg.training
        limit = min(training.curve_samples, training.test_limit or training.curve_samples)
        self.every = training.curve_every
        self.x, self.y = dataset.x_test[:limit], dataset.y_test[:limit]
        self.scores, self.out_dir, self.log = scores, out_dir, log
        self.points: list[dict] = []
        self.spent_s = 0.0  # on the curve's own passes

    def due(self, epoch: int) -> bool:
        """Whether the curve has a point after `epoch` (from 1)."""
        return bool(self.every) and epoch % self.every == 0

    def after_epoch(self, epoch: int, elapsed_s: float) -> None:
        """Score the model after `epoch` if due; elapsed_s: since training began, all told."""
        if not self.due(epoch):
            return
        began = time.perf_counter()
        score = accuracy(predict_labels(self.scores(self.x, f'curve_{epoch}')), self.y)
        point = {'epoch': epoch, 'train_seconds': round(elapsed_s - self.spent_s, 3),
                 'test_accuracy': score, 'samples': len(self.x)}
        self.spent_s += time.perf_counter() - began
        self.points.append(point)
        self.log(f'epoch {epoch}: test accuracy {score:.4f} on {len(self.x)} images after '
                 f"{point['train_seconds']:.0f} s of training")
        if self.out_dir is not None:
            write_curve(self.points, self.out_dir)
