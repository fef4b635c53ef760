"""
The distributed training run: batches into the first layer, per-epoch history back.

Batches stream through one window, so the pipeline never drains between
epochs; with hard negatives epoch by epoch instead, so the scoring pass that
opens an epoch sees the model a single process would.
"""
from __future__ import annotations

import itertools
import time
from typing import Callable

from dff_lifecycle.core.batch_codec import Kind, pack_labelled, pack_pair
from dff_lifecycle.core.batches import count_batches, TrainBatch, training_epochs
from dff_lifecycle.core.config import ModelConfig
from dff_lifecycle.core.data import Dataset
from dff_lifecycle.core.metrics import epoch_means, record
from dff_lifecycle.master.inference import DistributedInference, Progress
from dff_lifecycle.master.pipeline_io import PipelineIO
from dff_lifecycle.master.plan import DistributionPlan
from dff_lifecycle.master.streaming import Streamer
from dff_lifecycle.transport import to_numpy
import torch


def wire_batch(batch: TrainBatch) -> tuple[int, torch.Tensor]:
    """(kind, tensor) of a batch as the first layer takes it."""
    if batch.labelled:
        return Kind.TRAIN_LABELLED, pack_labelled(batch.images, batch.y_pos, batch.y_neg)
    return Kind.TRAIN_PAIR, pack_pair(batch.images, batch.hybrids)


class DistributedTraining:
    """Trains one deployed model on a dataset."""

    def __init__(self, model: ModelConfig, plan: DistributionPlan, io: PipelineIO,
                 streamer: Streamer, inference: DistributedInference, run_id: str,
                 progress: Progress, log: Callable[[str], None] = print) -> None:
        self.model = model
        self.io = io
        self.streamer = streamer
        self.inference = inference
        self.stream = f'train_{run_id}'
        self.progress = progress
        self.log = log
        # Layers nobody consumes: their acknowledgement means every layer trained the batch.
        self.leaves = [p.layer.index for p in plan.placements if not p.topics.train_out]

    def run(self, dataset: Dataset) -> tuple[list[dict], float]:
        """Train every batch of every epoch; (history, training seconds)."""
        model, stream = self.model, self.stream
        generator = torch.Generator().manual_seed(model.training.seed)
        epoch_of: dict[int, int] = {}
        scoring_round = itertools.count(2)

        def send(batch: TrainBatch) -> None:
            # One tensor per batch; the first layer overlays the labels itself.
            epoch_of[batch.seq] = batch.epoch
            kind, x = wire_batch(batch)
            self.io.send('train', to_numpy(x), stream=stream, batch_seq=batch.seq, kind=kind)

        def scorer(x: torch.Tensor) -> torch.Tensor:  # hard negatives: the model so far
            epoch = next(scoring_round)
            self.log(f'epoch {epoch}: scoring {len(x)} training images for hard negatives')
            return self.inference.label_scores(x, f'negatives_{epoch}')

        def done_through() -> int:
            return self.io.watch.completed_through(stream, self.leaves)

        started = time.perf_counter()
        with self.progress(count_batches(dataset, model), f'train {model.name} (DFF)') as bar:
            epochs = training_epochs(dataset, model, generator, scorer)
            runs = (epochs if model.training.negatives == 'hard'
                    else [itertools.chain.from_iterable(epochs)])
            for batches in runs:
                self.streamer.stream(batches, send, done_through, lambda _b: bar.update(1),
                                     what='training', stream_id=stream)
        seconds = time.perf_counter() - started
        return self.history(epoch_of), seconds

    def history(self, epoch_of: dict[int, int]) -> list[dict]:
        """
        Return per-epoch means of each layer's reported loss and goodness.

        Full batch: one record per layer, at its last step.
        """
        scalars = self.io.watch.scalars(self.stream)
        if self.model.training.mode != 'full_batch':
            return epoch_means({layer: [(epoch_of.get(seq, 0), v) for seq, v in by_seq.items()]
                                for layer, by_seq in scalars.items()})
        steps = self.model.training.steps_per_layer
        return [record(layer, 'step', steps, *by_seq[max(by_seq)])
                for layer, by_seq in sorted(scalars.items()) if by_seq]
