"""
The distributed training run: batches into the first layer, per-epoch history back.

Batches stream through one window, so the pipeline never drains between
epochs; with hard negatives epoch by epoch instead, so the scoring pass that
opens an epoch sees the model a single process would, and so with a learning
curve (`training.curve_every`), scored through the layers between epochs.

A run can be canceled: no batch goes out after `cancelled()` turns true, the
batches in flight finish (at most a window), and the run ends with what it has.
Each finished batch is reported to `on_progress`, with a reader of every layer's
newest loss and goodness.
"""
from __future__ import annotations

from dataclasses import dataclass
import itertools
import math
from typing import Callable, Iterable, Iterator, Optional, TypeVar

from dff_lifecycle.core.config import ModelConfig
from dff_lifecycle.core.data.datasets import Dataset
from dff_lifecycle.core.run.learning_curve import LearningCurve
from dff_lifecycle.core.run.metrics import epoch_means, record
from dff_lifecycle.core.stage.batch_codec import Kind, pack_classed, pack_labelled, pack_pair
from dff_lifecycle.core.stage.batches import count_batches, TrainBatch, training_epochs
from dff_lifecycle.core.stage.bundles import pack_bundle
from dff_lifecycle.master.bundling import Bundle, BundleSettings, BundleSizer
from dff_lifecycle.master.inference import DistributedInference, Progress
from dff_lifecycle.master.pipeline_io import PipelineIO
from dff_lifecycle.master.pipeline_watch import Scalars
from dff_lifecycle.master.plan import DistributionPlan, SHARD_UNITS
from dff_lifecycle.master.run_progress import ProgressClock, TrainingProgress
from dff_lifecycle.master.streaming import Streamer
from dff_lifecycle.wire.torch_arrays import to_numpy
import torch

T = TypeVar('T')
NO_SCALARS: Scalars = (math.nan, math.nan, math.nan)
LayerScalars = Callable[[], list[tuple[str, Scalars]]]  # [(node, (loss, g+, g-))] in plan order
ProgressHook = Callable[[TrainingProgress, LayerScalars], None]


def _never() -> bool:
    return False


@dataclass(frozen=True)
class TrainingResult:
    history: list[dict]
    seconds: float
    progress: TrainingProgress   # where it stopped
    canceled: bool               # stopped by `cancelled()` before the last batch
    bundle_sizes: tuple[int, ...] = ()  # batches per training message, in order
    curve: tuple[dict, ...] = ()        # the learning curve's points, if it had any


def _seq(batch: TrainBatch) -> int:
    return batch.seq


def wire_batch(batch: TrainBatch) -> tuple[int, torch.Tensor]:
    """(kind, tensor) of a batch as the first layer takes it."""
    if batch.classed:
        return Kind.TRAIN_CLASSED, pack_classed(batch.images, batch.y_pos)
    if batch.labelled:
        return Kind.TRAIN_LABELLED, pack_labelled(batch.images, batch.y_pos, batch.y_neg)
    return Kind.TRAIN_PAIR, pack_pair(batch.images, batch.hybrids)


class DistributedTraining:
    """Trains one deployed model on a dataset."""

    def __init__(self, model: ModelConfig, plan: DistributionPlan, io: PipelineIO,
                 streamer: Streamer, inference: DistributedInference, run_id: str,
                 progress: Progress, log: Callable[[str], None] = print, *,
                 cancelled: Callable[[], bool] = _never,
                 on_progress: Optional[ProgressHook] = None,
                 sizer: Optional[BundleSizer] = None,
                 curve: Optional[LearningCurve] = None) -> None:
        self.model = model
        self.plan = plan
        self.io = io
        self.streamer = streamer
        self.inference = inference
        self.stream = f'train_{run_id}'
        self.progress = progress
        self.log = log
        self.cancelled = cancelled
        self.on_progress = on_progress
        self.sizer = sizer  # None: every batch in its own message
        self.curve = curve
        # Layers nobody consumes: their acknowledgement means every layer trained the batch.
        # And every replica: one holds the stream's last batch until the replicas' last
        # average is in, so a batch done means the weights saved next are equal.
        self.leaves = [p.unit for p in plan.placements
                       if not p.topics.train_out or p.replicas > 1]

    def run(self, dataset: Dataset) -> TrainingResult:
        """Train every batch of every epoch, or until cancelled."""
        model, stream = self.model, self.stream
        generator = torch.Generator().manual_seed(model.training.seed)
        epoch_of: dict[int, int] = {}
        scoring_round = itertools.count(2)
        total = count_batches(dataset, model)
        sizer = self.sizer or BundleSizer(BundleSettings(max_batches=1), batch_bytes=1)
        clock = ProgressClock(total, 1 if model.training.mode == 'full_batch'
                              else model.training.epochs)
        done = 0

        def send(bundle: Bundle[TrainBatch]) -> None:
            # One tensor per batch, or per bundle; the first layer overlays the labels itself.
            wired = []
            for batch in bundle.batches:
                epoch_of[batch.seq] = batch.epoch
                wired.append((batch.seq, *wire_batch(batch)))
            if len(wired) == 1:
                _, kind, x = wired[0]
            else:
                kind = Kind.BUNDLE
                x = pack_bundle(wired[0][1], [(seq, t) for seq, _, t in wired], bundle.seq)
            self.io.send('train', to_numpy(x), stream=stream, batch_seq=bundle.seq, kind=kind)

        def scorer(x: torch.Tensor) -> torch.Tensor:  # hard negatives: the model so far
            epoch = next(scoring_round)
            self.log(f'epoch {epoch}: scoring {len(x)} training images for hard negatives')
            return self.inference.label_scores(x, f'negatives_{epoch}')

        def done_through() -> int:
            return self.io.watch.completed_through(stream, self.leaves)

        with self.progress(total, f'train {model.name} (DFF)') as bar:
            def finished(bundle: Bundle[TrainBatch]) -> None:
                nonlocal done
                done += len(bundle)
                bar.update(len(bundle))
                sizer.completed(len(bundle))
                if self.on_progress is not None:
                    self.on_progress(clock.progress(done), self.latest_scalars)

            clock.start()
            epochs = training_epochs(dataset, model, generator, scorer)
            per_epoch = model.training.negatives == 'hard' or self.curve is not None
            runs = iter(epochs if per_epoch else [itertools.chain.from_iterable(epochs)])
            # Looked at before each epoch too: a hard-negative epoch opens with a scoring pass.
            for epoch in itertools.count(1):
                batches = next(runs, None) if not self.cancelled() else None
                if batches is None:
                    break
                self.streamer.stream(sizer.bundles(self._until_cancelled(batches), _seq),
                                     send, done_through, finished, what='training',
                                     stream_id=stream, weight=len)
                if per_epoch and self.curve is not None and not self.cancelled():
                    self.curve.after_epoch(epoch, clock.elapsed_s())
        spent = self.curve.spent_s if self.curve is not None else 0.0
        seconds = clock.elapsed_s() - spent
        canceled = done < total
        if canceled:
            self.log(f'training canceled after {done} of {total} batches ({seconds:.1f} s): '
                     'streaming stopped')
        return TrainingResult(self.history(epoch_of), seconds, clock.progress(done), canceled,
                              tuple(sizer.sizes),
                              tuple(self.curve.points) if self.curve is not None else ())

    def _until_cancelled(self, items: Iterable[T]) -> Iterator[T]:
        """Yield the items until `cancelled()`, asked before each (none is made after it)."""
        source = iter(items)
        while not self.cancelled():
            item = next(source, None)
            if item is None:
                return
            yield item

    def latest_scalars(self) -> list[tuple[str, Scalars]]:
        """Every layer's newest (loss, goodness+, goodness-) of this run, in plan order."""
        scalars = self.io.watch.scalars(self.stream)
        out = []
        for p in self.plan.placements:
            by_seq = scalars.get(p.unit) or {}
            out.append((p.full_name, by_seq[max(by_seq)] if by_seq else NO_SCALARS))
        return out

    def history(self, epoch_of: dict[int, int]) -> list[dict]:
        """
        Return per-epoch means of each layer's reported loss and goodness.

        Full batch: one record per layer, at its last step.
        """
        # Shard k > 0 of a split layer reports the whole layer's loss again: shard 0 speaks.
        scalars = {unit: by_seq for unit, by_seq in self.io.watch.scalars(self.stream).items()
                   if unit < SHARD_UNITS}
        if self.model.training.mode != 'full_batch':
            history = epoch_means({layer: [(epoch_of.get(seq, 0), v)
                                           for seq, v in by_seq.items()]
                                   for layer, by_seq in scalars.items()})
            silent = self.io.watch.silent_groups(self.stream)
            for entry in history:  # the groups silent over the window closing each epoch
                by_seq = {seq: groups for seq, groups in silent.get(entry['layer'], {}).items()
                          if epoch_of.get(seq, 0) + 1 == entry['epoch']}
                if by_seq and by_seq[max(by_seq)]:
                    entry['silent_groups'] = sorted(by_seq[max(by_seq)])
            return history
        steps = self.model.training.steps_per_layer
        return [record(layer, 'step', steps, *by_seq[max(by_seq)])
                for layer, by_seq in sorted(scalars.items()) if by_seq]
