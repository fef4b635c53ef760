"""
Supervision of the deployed layers: checks that every layer is still there.

It notices a server container that stopped beating (dead or hung: within about
a second, `heartbeats.py`) and a layer node that left the ROS graph, and ends the
run with a message that names the layers and their server. This is the master's
one place for liveness and recovery: re-planning onto surviving servers belongs
here too, not in the streaming loop, which only calls `check` as it goes.
"""
from __future__ import annotations

import time
from typing import Callable, Iterable, Optional

from dff_lifecycle.master.errors import PipelineError
from dff_lifecycle.master.heartbeats import HeartbeatWatch
from dff_lifecycle.master.plan import LayerPlacement

GRAPH_CHECK_PERIOD_S = 2.0  # how often the graph is asked whether every layer node exists


class Supervisor:
    """Checks, at most every `period_s`, that every placed layer node is in the graph."""

    def __init__(self, placements: Iterable[LayerPlacement],
                 present_nodes: Callable[[], set[str]], *,
                 clock: Callable[[], float] = time.monotonic,
                 period_s: float = GRAPH_CHECK_PERIOD_S,
                 heartbeats: Optional[HeartbeatWatch] = None) -> None:
        self.placements = tuple(placements)
        self.present_nodes = present_nodes
        self.clock = clock
        self.period_s = period_s
        self.heartbeats = heartbeats
        self._last_check = clock()

    def missing(self) -> list[LayerPlacement]:
        """Return the placed layers whose node is not in the graph now."""
        present = self.present_nodes()
        return [p for p in self.placements if p.full_name not in present]

    def check(self, what: str) -> None:
        """Raise PipelineError when a server fell silent or a layer left the graph."""
        if self.heartbeats is not None:  # cheap: every call
            lost = self.heartbeats.lost()
            if lost:
                server, silent = max(lost.items(), key=lambda item: item[1])
                layers = ', '.join(p.full_name for p in self.placements if p.server == server)
                raise PipelineError(
                    f'{what} stopped: server container {server} has not answered for '
                    f'{silent:.1f} s (dead or hung); its layers: {layers or "none"}. Layers '
                    "save to their server's weight_dir on cleanup, shutdown and every "
                    'save_every_batches batches, so deploying again resumes from the last save.')
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
