"""
Progress of a training stream: epochs and batches done, time left, and a rate limit.

Pure (no torch, no ROS): the training reports how many batches every layer has
finished, the `train` action turns that into feedback at a bounded rate.
"""
from __future__ import annotations

from dataclasses import dataclass
import math
import time
from typing import Callable, Optional

UNKNOWN = -1.0  # remaining time before any batch finished


def remaining_s(done: int, total: int, elapsed_s: float,
                first_done_s: Optional[float] = None) -> float:
    """
    Estimate the seconds left for `total - done` batches from the rate so far (-1: unknown).

    Given when the first batch finished (`first_done_s`), the rate is taken after it, and
    stays unknown until a second one finished: the first batch also paid for filling the
    pipeline, which later batches overlap.
    """
    left = max(0, total - done)
    if done <= 0 or total <= 0:
        return UNKNOWN
    if left == 0:
        return 0.0
    if first_done_s is None:
        return left * elapsed_s / done
    if done < 2 or elapsed_s <= first_done_s:
        return UNKNOWN
    return left * (elapsed_s - first_done_s) / (done - 1)


@dataclass(frozen=True)
class TrainingProgress:
    """Batches every layer has finished, out of `total` over `epochs` epochs."""

    done: int
    total: int
    epochs: int
    elapsed_s: float
    remaining_s: float = UNKNOWN

    @property
    def batches_per_epoch(self) -> int:
        return max(1, self.total // max(1, self.epochs))

    @property
    def epoch(self) -> int:
        """Return the epoch of the last finished batch, from 1 (1 before the first)."""
        return min(self.epochs, max(1, math.ceil(self.done / self.batches_per_epoch)))

    @property
    def batch(self) -> int:
        """Batches of `epoch` finished."""
        return self.done - (self.epoch - 1) * self.batches_per_epoch

    @property
    def epochs_done(self) -> int:
        return min(self.epochs, self.done // self.batches_per_epoch)

    @property
    def epoch_end(self) -> bool:
        """Return True when the last batch of an epoch (or of the run) just finished."""
        return self.done > 0 and (self.done % self.batches_per_epoch == 0
                                  or self.done >= self.total)


class ProgressClock:
    """Turns `done` counts into TrainingProgress, timed from `start()`."""

    def __init__(self, total: int, epochs: int,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.total = total
        self.epochs = epochs
        self.clock = clock
        self.started = clock()
        self.first_done_s: Optional[float] = None

    def start(self) -> None:
        self.started, self.first_done_s = self.clock(), None

    def elapsed_s(self) -> float:
        return self.clock() - self.started

    def progress(self, done: int) -> TrainingProgress:
        elapsed = self.elapsed_s()
        if done > 0 and self.first_done_s is None:
            self.first_done_s = elapsed
        return TrainingProgress(done, self.total, self.epochs, elapsed,
                                remaining_s(done, self.total, elapsed, self.first_done_s))


class Throttle:
    """At most one `ready()` per `period_s`, unless forced (an epoch end, the last batch)."""

    def __init__(self, period_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.period_s = period_s
        self.clock = clock
        self._last: Optional[float] = None

    def ready(self, force: bool = False) -> bool:
        now = self.clock()
        if force or self._last is None or now - self._last >= self.period_s:
            self._last = now
            return True
        return False
