"""
Positive/negative training batches, shared by the single-process trainer and the master.

Both call training_batches with a generator seeded the same way, so they see identical batches.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Iterator, Optional

from dff_lifecycle.core.config import ModelConfig
from dff_lifecycle.core.data.augment import augment
from dff_lifecycle.core.data.datasets import Dataset
from dff_lifecycle.core.ff.negatives import (candidate_inputs, hard_wrong_labels, hybrid_negatives,
                                             overlay_labels, permuted_labels, random_wrong_labels,
                                             self_contrastive_pairs, stacked_with_itself)
import torch
from torch import Tensor

MIN_BATCH = 2  # a smaller last batch is dropped: hybrid negatives need a partner image


@dataclass(frozen=True)
class TrainBatch:
    """
    One training batch, as drawn: images plus labels (supervised) or images plus hybrids.

    `x_pos` / `x_neg` are the layers' inputs, built on first use: a single process needs
    them, while the master sends the images and labels and lets the first layer build them.
    """

    seq: int      # position in the run, from 0, counting across epochs
    epoch: int
    images: Tensor                     # supervised: the images; otherwise the positives
    hybrids: Optional[Tensor] = None   # unsupervised: the negatives
    y_pos: Optional[Tensor] = None     # supervised: true labels
    y_neg: Optional[Tensor] = None     # supervised: wrong labels
    num_classes: int = 0
    classed: bool = False              # class_groups: images and true labels, no negatives

    @property
    def labelled(self) -> bool:
        """Images with a true and a wrong label, overlaid by the first layer (pos_neg)."""
        return self.y_pos is not None and not self.classed

    @cached_property
    def x_pos(self) -> Tensor:
        if self.labelled:
            return overlay_labels(self.images, self.y_pos, self.num_classes)
        return self.images

    @cached_property
    def x_neg(self) -> Tensor:
        if self.labelled:
            return overlay_labels(self.images, self.y_neg, self.num_classes)
        return self.hybrids


def training_set(dataset: Dataset, model_cfg: ModelConfig) -> tuple[Tensor, Tensor]:
    """Return the training images and labels the config trains on (the first `train_limit`)."""
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


LabelScorer = Callable[[Tensor], Tensor]  # training images (N, ...) -> label goodness (N, C)


def training_epochs(dataset: Dataset, model_cfg: ModelConfig, generator: torch.Generator,
                    label_scorer: Optional[LabelScorer] = None) -> Iterator[Iterator[TrainBatch]]:
    """
    One iterator of batches per epoch, reshuffled by `generator`; full_batch: one batch.

    Consume each epoch before asking for the next: with hard negatives the next epoch starts
    by scoring the training set with `label_scorer`, which must see the model as trained so far.
    """
    x, y = training_set(dataset, model_cfg)
    training = model_cfg.training
    if training.mode == 'full_batch':
        yield iter([make_batch(0, 0, x, y, dataset, model_cfg, generator)])
        return
    hard = training.negatives == 'hard'
    if hard and label_scorer is None:
        raise ValueError(f'{model_cfg.name}: hard negatives need a label scorer')
    batches_per_epoch = count_batches(dataset, model_cfg) // training.epochs
    for epoch in range(training.epochs):
        order = torch.randperm(len(x), generator=generator)
        wrong = None
        if hard and epoch > 0:  # an untrained model's scores carry no information
            wrong = hard_wrong_labels(label_scorer(x), y, training.hard_negative_temperature,
                                      generator)
        yield _epoch_batches(x, y, wrong, order, epoch, epoch * batches_per_epoch, dataset,
                             model_cfg, generator)


def _epoch_batches(x: Tensor, y: Tensor, wrong: Optional[Tensor], order: Tensor, epoch: int,
                   first_seq: int, dataset: Dataset, model_cfg: ModelConfig,
                   generator: torch.Generator) -> Iterator[TrainBatch]:
    seq = first_seq
    batch_size = model_cfg.training.batch_size
    for start in range(0, len(x), batch_size):
        index = order[start:start + batch_size]
        if len(index) < MIN_BATCH:
            continue
        chosen_wrong = None if wrong is None else wrong[index]
        yield make_batch(seq, epoch, x[index], y[index], dataset, model_cfg, generator,
                         chosen_wrong)
        seq += 1


def training_batches(dataset: Dataset, model_cfg: ModelConfig, generator: torch.Generator,
                     label_scorer: Optional[LabelScorer] = None) -> Iterator[TrainBatch]:
    """Every batch of every epoch in order (see training_epochs)."""
    for epoch in training_epochs(dataset, model_cfg, generator, label_scorer):
        yield from epoch


def make_batch(seq: int, epoch: int, x: Tensor, y: Tensor, dataset: Dataset,
               model_cfg: ModelConfig, generator: torch.Generator,
               wrong: Optional[Tensor] = None) -> TrainBatch:
    """
    Draw a batch's negatives: wrong labels when supervised, hybrid images otherwise.

    Supervised negatives carry `wrong` labels when given, else labels drawn as the config's
    `negatives` says: uniformly random wrong ones or the batch's labels permuted.
    """
    training = model_cfg.training
    x = augment(x, dataset.image_shape, training.augment_crop, training.augment_flip, generator,
                training.augment_rotate, training.augment_scale)
    if model_cfg.class_groups:
        return TrainBatch(seq, epoch, x, y_pos=y, num_classes=model_cfg.num_classes,
                          classed=True)
    if model_cfg.supervised:
        if wrong is None and model_cfg.training.negatives == 'permuted':
            wrong = permuted_labels(y, generator)
        elif wrong is None:
            wrong = random_wrong_labels(y, model_cfg.num_classes, generator)
        return TrainBatch(seq, epoch, x, y_pos=y, y_neg=wrong,
                          num_classes=model_cfg.num_classes)
    images = x if x.dim() == 4 else x.reshape(len(x), *dataset.image_shape)
    if model_cfg.self_contrastive:
        positives, negatives = self_contrastive_pairs(images, generator)
        return TrainBatch(seq, epoch, positives, hybrids=negatives)
    return TrainBatch(seq, epoch, images, hybrids=hybrid_negatives(images, generator))


def make_pair(x: Tensor, y: Tensor, dataset: Dataset, model_cfg: ModelConfig,
              generator: torch.Generator,
              wrong: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
    """(positives, negatives): label overlays when supervised, real vs hybrid images otherwise."""
    batch = make_batch(0, 0, x, y, dataset, model_cfg, generator, wrong)
    return batch.x_pos, batch.x_neg


def inference_inputs(x: Tensor, model_cfg: ModelConfig) -> Tensor:
    """Return the layers' input at inference: every label candidate (overlay) or the images."""
    if model_cfg.self_contrastive:
        return stacked_with_itself(x, model_cfg.image_shape)
    return candidate_inputs(x, model_cfg.num_classes) if model_cfg.overlays_labels else x
