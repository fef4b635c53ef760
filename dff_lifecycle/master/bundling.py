"""
How many training batches travel in one message: sized from the measured pace.

Every message costs each hop about a millisecond of rclpy Python (take, publish,
conversion), whatever its size. When a batch takes the slowest stage about as
long, a pipeline pays that per-message cost as often as it computes. A bundle of
k batches (core.stage.bundles) pays it once for k.

The size adapts to what the run measures: the seconds per batch at the
pipeline's exit (the slowest stage and the slowest link, per-message costs
included). A bundle should carry at least `target_s` of that pace, so the
per-message cost is a small part of it; it is bounded by `max_latency_s` of
pace (a batch waits at most that long for its bundle-mates at each stage), by
`max_bytes` and by `max_batches`. Until a pace is measured bundles hold one
batch. Pure logic with an injected clock; no ROS.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
import math
import time
from typing import Callable, Generic, Iterable, Iterator, Optional, Sequence, TypeVar

B = TypeVar('B')

#: Completions the pace is measured over (the streamer looks several times a second).
PACE_WINDOW = 16


@dataclass(frozen=True)
class BundleSettings:
    max_batches: int           # 1: one batch per message (bundling off)
    adaptive: bool = True      # False: always max_batches (a fixed size)
    target_s: float = 0.02     # pace a bundle should carry at least
    max_latency_s: float = 0.25  # pace a bundle may carry at most
    max_bytes: int = 8 << 20   # wire bytes of one bundle at most

    def __post_init__(self) -> None:
        if self.max_batches < 1:
            raise ValueError(f'max_batches must be >= 1, got {self.max_batches}')


@dataclass(frozen=True)
class Bundle(Generic[B]):
    """Consecutive batches sent as one message under the last one's seq."""

    seq: int
    batches: tuple[B, ...]

    def __len__(self) -> int:
        return len(self.batches)


class BundleSizer:
    """Chooses the size of the next bundle from the pace measured so far."""

    def __init__(self, settings: BundleSettings, batch_bytes: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.batch_bytes = max(1, int(batch_bytes))
        self.clock = clock
        self._done = 0
        self._marks: deque[tuple[float, int]] = deque(maxlen=PACE_WINDOW)
        self.sizes: list[int] = []  # every size chosen, for reports and tests

    def completed(self, batches: int) -> None:
        """Record that `batches` more batches left the pipeline now."""
        self._done += batches
        self._marks.append((self.clock(), self._done))

    def pace_s(self) -> Optional[float]:
        """Seconds per batch at the pipeline's exit lately; None until measured."""
        if len(self._marks) < 3:
            return None
        (t0, n0), (t1, n1) = self._marks[0], self._marks[-1]
        if n1 <= n0 or t1 <= t0:
            return None
        return (t1 - t0) / (n1 - n0)

    def size(self) -> int:
        s = self.settings
        by_bytes = max(1, s.max_bytes // self.batch_bytes)
        cap = min(s.max_batches, by_bytes)
        if not s.adaptive:
            return cap
        pace = self.pace_s()
        if pace is None:
            return 1
        wanted = math.ceil(s.target_s / pace) if pace > 0 else cap
        by_latency = max(1, int(s.max_latency_s / pace)) if pace > 0 else cap
        return max(1, min(wanted, by_latency, cap))

    def bundles(self, batches: Iterable[B], seq_of: Callable[[B], int]) -> Iterator[Bundle[B]]:
        """
        Group consecutive batches, each group as large as `size()` says when it starts.

        The last group of the iterable (an epoch's end, with hard negatives) may be smaller.
        """
        source = iter(batches)
        while True:
            group = _take(source, self.size())
            if not group:
                return
            self.sizes.append(len(group))
            yield Bundle(seq_of(group[-1]), tuple(group))


def _take(source: Iterator[B], n: int) -> Sequence[B]:
    group = []
    for item in source:
        group.append(item)
        if len(group) >= n:
            break
    return group
