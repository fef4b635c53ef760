"""
A cap on the share of time a recurring chore may take (pure: an injected clock).

Checkpoints are the chore that matters: a layer saves its weights and optimiser
state, and the master pulls the newest file of every layer so that it can move
a lost one. Both were paced by the clock alone (every second), which is free for
a 500-unit layer and ruinous for a wide one on a slow device: four 1800-unit
layers on 0.4-core devices wrote and shipped about 40 MB per layer and second,
the training crawled at 10 s a batch instead of 0.5 s, and the server's executor,
busy sending checkpoints, fell silent long enough to be judged dead.

`DutyCycle` keeps the chore at most `fraction` of the wall time: after a run
that took `d` seconds, the next one is due no sooner than `d / fraction` after
the start of that run (and never sooner than the configured period). So a
chore that costs nothing keeps its period, and one that costs a lot runs less
often, by measurement, on whatever device it runs on.
"""
from __future__ import annotations

import time
from typing import Callable

DEFAULT_FRACTION = 0.1   # checkpointing may take a tenth of a device's time


class DutyCycle:
    """When a recurring chore may run again, from how long it took last time."""

    def __init__(self, period_s: float, fraction: float = DEFAULT_FRACTION, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f'duty cycle fraction must be in (0, 1], got {fraction}')
        self.period_s = max(0.0, float(period_s))
        self.fraction = fraction
        self.clock = clock
        self._started = clock()
        self._took = 0.0

    @property
    def interval_s(self) -> float:
        """Return the wait between two starts now: the period, or longer if it is costly."""
        return max(self.period_s, self._took / self.fraction)

    def due(self) -> bool:
        """Return True once the interval since the last run's start has passed."""
        return self.clock() - self._started >= self.interval_s

    def affordable(self) -> bool:
        """Return True once the chore's own cost allows it again, whatever the period."""
        return self.clock() - self._started >= self._took / self.fraction

    def run(self, chore: Callable[[], object]) -> object:
        """Run `chore` now, timing it for the next interval; return what it returned."""
        started = self.clock()
        try:
            return chore()
        finally:
            self._started = started
            self._took = max(0.0, self.clock() - started)

    def restart(self) -> None:
        """Count the interval from now (a run started, or the chore was done elsewhere)."""
        self._started = self.clock()
