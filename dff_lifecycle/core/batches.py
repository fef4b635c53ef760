"""Positive/negative training batches, shared by the single-process trainer and the master.

Both call training_batches with a generator seeded the same way, so they see identical batches.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch
from torch import Tensor

from dff_lifecycle.core.config import ModelConfig
from dff_lifecycle.core.data import Dataset
from dff_lifecycle.core.negatives import (candidate_inputs, hybrid_negatives, overlay_labels,
                                          random_wrong_labels)

MIN_BATCH = 2  # a smaller last batch is dropped: hybrid negatives need a partner image


@dataclass(frozen=True)
class TrainBatch:
    seq: int      # position in the run, from 0, counting across epochs
    epoch: int
    x_pos: Tensor
    x_neg: Tensor


def training_set(dataset: Dataset, model_cfg: ModelConfig) -> tuple[Tensor, Tensor]:
    """The training images and labels the config trains on (the first `train_limit`)."""
    limit = model_cfg.training.train_limit
    return dataset.x_train[:limit], dataset.y_train[:limit]


def count_batches(dataset: Dataset, model_cfg: ModelConfig) -> int:
    """How many batches training_batches yields (for progress bars)."""
    training = model_cfg.training
    if training.mode == 'full_batch':
        return 1
    n = len(training_set(dataset, model_cfg)[0])
    full, rest = divmod(n, training.batch_size)
    return training.epochs * (full + (rest >= MIN_BATCH))


def training_batches(dataset: Dataset, model_cfg: ModelConfig,
                     generator: torch.Generator) -> Iterator[TrainBatch]:
    """Mini-batches reshuffled each epoch by `generator`; full_batch mode: one batch of all."""
    x, y = training_set(dataset, model_cfg)
    training = model_cfg.training
    if training.mode == 'full_batch':
        x_pos, x_neg = make_pair(x, y, dataset, model_cfg, generator)
        yield TrainBatch(0, 0, x_pos, x_neg)
        return
    seq = 0
    for epoch in range(training.epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), training.batch_size):
            index = order[start:start + training.batch_size]
            if len(index) < MIN_BATCH:
                continue
            x_pos, x_neg = make_pair(x[index], y[index], dataset, model_cfg, generator)
            yield TrainBatch(seq, epoch, x_pos, x_neg)
            seq += 1


def make_pair(x: Tensor, y: Tensor, dataset: Dataset, model_cfg: ModelConfig,
              generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """(positives, negatives): label overlays when supervised, real vs hybrid images otherwise."""
    if model_cfg.supervised:
        wrong = random_wrong_labels(y, model_cfg.num_classes, generator)
        return (overlay_labels(x, y, model_cfg.num_classes),
                overlay_labels(x, wrong, model_cfg.num_classes))
    images = x if x.dim() == 4 else x.reshape(len(x), *dataset.image_shape)
    return images, hybrid_negatives(images, generator)


def inference_inputs(x: Tensor, model_cfg: ModelConfig) -> Tensor:
    """What the layers see at inference: every label candidate (supervised) or the images."""
    return candidate_inputs(x, model_cfg.num_classes) if model_cfg.supervised else x
