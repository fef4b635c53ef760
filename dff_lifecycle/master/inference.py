"""
Distributed inference: images in, the reporting layers' goodness or features back.

Images go in through the model's inference input; each reporting layer's goodness or
features come back, in order.

It supplies the two functions `core.evaluation` evaluates through, and the
label scores the hard-negative sampler needs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from dff_lifecycle.core.config import ModelConfig
from dff_lifecycle.core.ff.negatives import stacked_with_itself
from dff_lifecycle.core.run.evaluation import scores_from_goodness
from dff_lifecycle.core.stage.batch_codec import Kind
from dff_lifecycle.master.pipeline_io import PipelineIO
from dff_lifecycle.master.plan import DistributionPlan
from dff_lifecycle.master.streaming import Streamer
from dff_lifecycle.wire.torch_arrays import to_numpy
import numpy as np
import torch

Progress = Callable[[int, str], object]  # (total, description) -> a tqdm-like context manager


@dataclass(frozen=True)
class InferenceBatch:
    seq: int
    start: int


class DistributedInference:
    """Inference passes of one deployed model."""

    def __init__(self, model: ModelConfig, plan: DistributionPlan, io: PipelineIO,
                 streamer: Streamer, run_id: str, progress: Progress) -> None:
        self.model = model
        self.io = io
        self.streamer = streamer
        self.run_id = run_id
        self.progress = progress
        self.reporting = {p.layer.index for p in plan.placements
                          if p.parameters['report_goodness'] or p.parameters['report_features']}

    def infer(self, x: torch.Tensor, tag: str) -> dict[int, torch.Tensor]:
        """Run x through the pipeline; per reporting layer, its results in order."""
        model, watch = self.model, self.io.watch
        stream = f'infer_{tag}_{self.run_id}'
        size = model.training.eval_batch_size
        batches = [InferenceBatch(seq, start) for seq, start in enumerate(range(0, len(x), size))]
        collected: dict[int, dict[int, np.ndarray]] = {}

        def send(batch: InferenceBatch) -> None:
            # Each image once; an overlay model's first layer tries every label on it.
            images = x[batch.start:batch.start + size]
            if model.self_contrastive:  # the layers read an image stacked with itself
                images = stacked_with_itself(images, model.image_shape)
            kind = Kind.INFER_IMAGES if model.overlays_labels else Kind.INFERENCE
            self.io.send('infer', to_numpy(images.float()), stream=stream, batch_seq=batch.seq,
                         kind=kind)

        def done_through() -> int:
            for seq in range(len(batches)):
                if seq not in collected:
                    got = watch.take_result(stream, seq, self.reporting)
                    if got is not None:
                        collected[seq] = got
            return next((seq - 1 for seq in range(len(batches)) if seq not in collected),
                        len(batches) - 1)

        with self.progress(len(batches), f'infer {tag}') as bar:
            self.streamer.stream(batches, send, done_through, lambda _b: bar.update(1),
                                 what=f'inference ({tag})')
        return {i: torch.from_numpy(np.concatenate([collected[s][i] for s in range(len(batches))]))
                for i in self.reporting}

    def label_scores(self, x: torch.Tensor, tag: str) -> torch.Tensor:
        """(N, C) class scores from the goodness layers (core.evaluation.scores_from_goodness)."""
        goodness = self.infer(x, tag)
        return scores_from_goodness([goodness[i] for i in self.model.goodness_layers],
                                    self.model)

    def features(self, x: torch.Tensor, tag: str) -> torch.Tensor:
        """(N, F) normalised activities of the feature layers, concatenated."""
        parts = self.infer(x, tag)
        return torch.cat([parts[i] for i in self.model.feature_layers], dim=1)
