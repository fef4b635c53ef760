"""
Supervision of the deployed layers: checks that every layer is still there.

Today it notices a layer node that left the ROS graph (its server container
died) and ends the run with a message that names the layer and its server.
This is the master's one place for liveness and recovery: heartbeats, bonds
and re-planning onto surviving servers belong here, not in the streaming loop,
which only calls `check` as it goes.
"""
from __future__ import annotations

import time
from typing import Callable, Iterable

from dff_lifecycle.master.errors import PipelineError
from dff_lifecycle.master.plan import LayerPlacement

GRAPH_CHECK_PERIOD_S = 2.0  # how often the graph is asked whether every layer node exists


class Supervisor:
    """Checks, at most every `period_s`, that every placed layer node is in the graph."""

    def __init__(self, placements: Iterable[LayerPlacement],
                 present_nodes: Callable[[], set[str]], *,
                 clock: Callable[[], float] = time.monotonic,
                 period_s: float = GRAPH_CHECK_PERIOD_S) -> None:
        self.placements = tuple(placements)
        self.present_nodes = present_nodes
        self.clock = clock
        self.period_s = period_s
        self._last_check = clock()

    def missing(self) -> list[LayerPlacement]:
        """Return the placed layers whose node is not in the graph now."""
        present = self.present_nodes()
        return [p for p in self.placements if p.full_name not in present]

    def check(self, what: str) -> None:
        """Raise PipelineError when a layer left the graph; cheap between periods."""
        now = self.clock()
        if now - self._last_check < self.period_s:
            return
        self._last_check = now
        gone = self.missing()
        if gone:
            listing = ', '.join(f'{p.full_name} (on {p.server})' for p in gone)
            raise PipelineError(
                f'{what} stopped: {listing} left the ROS graph (server container gone?). The '
                "other layers save their weights at teardown; layers save to their server's "
                'weight_dir on cleanup, shutdown and every save_every_batches batches, so '
                'deploying again resumes from the last save.')
