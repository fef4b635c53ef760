"""
Learning from a stream of labelled images: batches as they fill, with a bounded replay.

FF needs no backward pass through the network, so a robot can learn where it sees:
every labelled image goes into the pending batch; when `batch_size` have arrived,
every layer takes one local step on them (plus `replay_per_batch` images drawn from a
bounded buffer of earlier ones, against forgetting), and the new images join the
buffer, the oldest leaving it. Without replay, a stream is trained exactly as
`dff_train` trains the same images in the same order (one epoch, no shuffle).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from dff_lifecycle.core.config import ModelConfig
from dff_lifecycle.core.ff.local_trainer import StepResult
from dff_lifecycle.core.ff.network import FFNetwork
from dff_lifecycle.core.stage.batches import make_batch, MIN_BATCH
import torch
from torch import Tensor


class ReplayBuffer:
    """The last `capacity` (input, label) pairs, sampled uniformly."""

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError(f'replay capacity must be >= 0, got {capacity}')
        self.capacity = capacity
        self._x: Optional[Tensor] = None
        self._y = torch.zeros(capacity, dtype=torch.int64)
        self._next = 0
        self.size = 0

    def add(self, x: Tensor, y: Tensor) -> None:
        if not self.capacity:
            return
        if self._x is None:
            self._x = torch.zeros(self.capacity, *x.shape[1:], dtype=x.dtype)
        for row in range(len(x)):
            self._x[self._next], self._y[self._next] = x[row], y[row]
            self._next = (self._next + 1) % self.capacity
            self.size = min(self.size + 1, self.capacity)

    def sample(self, count: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        count = min(count, self.size)
        if not count:
            return torch.zeros(0), torch.zeros(0, dtype=torch.int64)
        rows = torch.randint(self.size, (count,), generator=generator)
        return self._x[rows], self._y[rows]


@dataclass(frozen=True)
class _Shape:
    image_shape: tuple[int, ...]  # what make_batch reads of a dataset


class StreamLearner:
    """Trains `network` on labelled inputs as they come (supervised models)."""

    def __init__(self, model_cfg: ModelConfig, network: FFNetwork,
                 image_shape: tuple[int, ...], replay_capacity: int = 0,
                 replay_per_batch: int = 0, seed: int = 0) -> None:
        if not model_cfg.supervised:
            raise ValueError(f'{model_cfg.name}: learning from labelled images needs a '
                             'supervised model')
        if replay_per_batch < 0:
            raise ValueError(f'replay_per_batch must be >= 0, got {replay_per_batch}')
        self.model_cfg, self.network = model_cfg, network
        self.batch_size = model_cfg.training.batch_size
        self.replay = ReplayBuffer(replay_capacity)
        self.replay_per_batch = replay_per_batch
        self.generator = torch.Generator().manual_seed(seed)
        self._shape = _Shape(tuple(image_shape))
        self._x: list[Tensor] = []
        self._y: list[int] = []
        self.samples_seen = 0
        self.batches_trained = 0
        self.last: list[StepResult] = []

    @property
    def pending(self) -> int:
        return len(self._y)

    def add(self, x: Tensor, label: int) -> Optional[list[StepResult]]:
        """Take one input (1, ...) and its label; train when a batch is full."""
        if not 0 <= label < self.model_cfg.num_classes:
            raise ValueError(f'label {label} is outside 0 .. {self.model_cfg.num_classes - 1}')
        self._x.append(x)
        self._y.append(label)
        self.samples_seen += 1
        return self.flush() if len(self._y) >= self.batch_size else None

    def flush(self) -> Optional[list[StepResult]]:
        """Train on what is pending (at least MIN_BATCH images; fewer wait for more)."""
        if len(self._y) < MIN_BATCH:
            return None
        x, y = torch.cat(self._x), torch.tensor(self._y, dtype=torch.int64)
        self._x, self._y = [], []
        old_x, old_y = self.replay.sample(self.replay_per_batch, self.generator)
        batch_x, batch_y = (torch.cat([x, old_x]), torch.cat([y, old_y])) if len(old_y) \
            else (x, y)
        batch = make_batch(self.batches_trained, 0, batch_x, batch_y, self._shape,
                           self.model_cfg, self.generator)
        self.last = (self.network.train_batch_classes(batch.images, batch.y_pos)
                     if batch.classed else self.network.train_batch(batch.x_pos, batch.x_neg))
        self.replay.add(x, y)
        self.batches_trained += 1
        return self.last
