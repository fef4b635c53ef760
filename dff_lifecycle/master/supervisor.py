"""
Supervision of the deployed layers: notices what is lost, and has it recovered.

It notices a server container that stopped beating (dead, hung or cut off:
within about a second, `heartbeats.py`), a layer finalized by hand (its status
says so), and a layer node that left the ROS graph. With a `Recovery`
(`recovery.py`) the lost layers are moved or created again and `check` returns
what the streamer must resend (`Recovered`); without one, or when
recovery is impossible, the run ends with a message that names the layers and
their server. The streaming loop only calls `check` as it goes.
"""
from __future__ import annotations

import time
from typing import Callable, Iterable, Optional

from dff_lifecycle.master.errors import PipelineError
from dff_lifecycle.master.heartbeats import HeartbeatWatch, MAX_LEASE_FACTOR
from dff_lifecycle.master.plan import LayerPlacement
from dff_lifecycle.master.recovery import Recovered, Recovery

GRAPH_CHECK_PERIOD_S = 2.0  # how often the graph is asked whether every layer node exists

RESUME_HINT = ("Layers checkpoint to their server's weight_dir every save_every_batches "
               'batches or save_every_s seconds, and on cleanup and shutdown, so deploying '
               'again resumes from the last checkpoint.')


class Supervisor:
    """Checks liveness on every call, and the graph at most every `period_s`."""

    def __init__(self, placements: Iterable[LayerPlacement],
                 present_nodes: Callable[[], set[str]], *,
                 clock: Callable[[], float] = time.monotonic,
                 period_s: float = GRAPH_CHECK_PERIOD_S,
                 heartbeats: Optional[HeartbeatWatch] = None,
                 layer_states: Callable[[], dict[int, str]] = dict,
                 recovery: Optional[Recovery] = None) -> None:
        self._placements = tuple(placements)  # recovery, when given, keeps the current plan
        self.present_nodes = present_nodes
        self.clock = clock
        self.period_s = period_s
        self.heartbeats = heartbeats
        self.layer_states = layer_states
        self.recovery = recovery
        self._last_check = clock()
        self._busy: set[str] = set()  # servers reported busy (silent, their process alive)
        self._gone_at: Optional[float] = None  # when layers were first seen gone from the graph
        self._unseen: set[str] = set()  # hosted by a living server, missing from the graph

    def placements(self) -> tuple[LayerPlacement, ...]:
        return self.recovery.plan.placements if self.recovery is not None else self._placements

    def missing(self) -> list[LayerPlacement]:
        """Return the placed layers whose node is not in the graph now."""
        present = self.present_nodes()
        return [p for p in self.placements() if p.full_name not in present]

    def lost_servers(self) -> dict[str, float]:
        """{server: seconds silent} of the servers lost and not yet recovered from."""
        if self.heartbeats is None:
            return {}
        done = self.recovery.lost if self.recovery is not None else set()
        return {s: t for s, t in self.heartbeats.lost().items() if s not in done}

    def check(self, what: str) -> Optional[Recovered]:
        """
        Return what to resend when lost layers were recovered; None when all is well.

        Raise PipelineError when a server fell silent, a layer was finalized or left
        the graph, and nothing can recover it.
        """
        recovered: Optional[Recovered] = None
        if self.recovery is not None:
            self.recovery.fence_returned()
        self._report_busy()
        lost = self.lost_servers()
        if lost:
            recovered = self._recover(lost, what)
        finalized = [p for p in self.placements()
                     if self.layer_states().get(p.unit) == 'finalized'
                     and p.server not in lost]
        if finalized and self.recovery is not None:
            again = self.recovery.recreate(finalized)
            recovered = recovered or again
        now = self.clock()
        if recovered is not None or now - self._last_check < self.period_s:
            return recovered
        self._last_check = now
        gone = self.missing()
        if not gone:
            self._gone_at = None
            self._unseen = set()
            return None
        servers = {p.server for p in gone}
        # The graph dropping a layer whose server is also silent past the lease confirms
        # the loss, even before that server's jitter tolerance is used up.
        confirmed = self._silent_past_lease(servers)
        if confirmed:
            return self._recover(confirmed, what)
        if self._gone_at is None:
            self._gone_at = now
        if self._maybe_dying(servers, now):
            # A killed process can leave the graph before its heartbeat lease ends: the
            # heartbeat rule names it (and recovery moves its layers) on a coming call.
            self._last_check = now - self.period_s  # look at the graph again next call
            return None
        if self.recovery is not None:
            # The server beats. Either the master's graph lost sight of a layer that is there
            # (the master was stopped past the participant lease): the server says so and
            # announces itself again; or the server removed the node itself: a layer
            # finalized by hand whose last status the master never took (the node is
            # destroyed right after it), or a model deleted by someone else. Its weights were
            # saved on the way: it is created again.
            hosted = self.recovery.still_hosted(gone)
            unseen = sorted(hosted - self._unseen)
            if unseen:
                self.recovery.log(f'{", ".join(unseen)}: missing from the master\'s ROS graph '
                                  'but active on a living server: asked it to announce itself '
                                  'again; nothing moves')
            self._unseen = hosted
            gone = [p for p in gone if p.full_name not in hosted]
            if not gone:
                return None
            self._gone_at = None
            return self.recovery.recreate(gone, why='left the ROS graph on a living server')
        listing = ', '.join(f'{p.full_name} (on {p.server})' for p in gone)
        raise PipelineError(f'{what} stopped: {listing} left the ROS graph (server '
                            f'container gone?). {RESUME_HINT}')

    def _report_busy(self) -> None:
        """
        Say once when a server falls silent while the middleware vouches for it.

        And when it beats again: slow is not lost, and the operator should know which
        device is slow.
        """
        if self.heartbeats is None or self.recovery is None:
            return
        busy = self.heartbeats.busy()
        for server in sorted(set(busy) - self._busy):
            self.recovery.log(f'{server} is busy: no beat for {busy[server]:.1f} s, but its '
                              'process is alive (DDS liveliness); waiting for it, it is not lost')
        for server in sorted(self._busy - set(busy)):
            if server in self.heartbeats.alive():
                self.recovery.log(f'{server} beats again')
        self._busy = set(busy)

    def _maybe_dying(self, servers: set[str], now: float) -> bool:
        """
        Whether the servers of layers gone from the graph may be dying rather than alive.

        True while none of them beat since the layers were seen gone, for at most the
        longest lease the heartbeat rule allows; a server that beats since is alive, so
        its layer really left the graph.
        """
        if self.heartbeats is None or self._gone_at is None:
            return False
        if now - self._gone_at > self.heartbeats.lease_s * MAX_LEASE_FACTOR:
            return False
        for server in servers:
            last = self.heartbeats.last_beat(server)
            if last is not None and last > self._gone_at:
                return False
        return True

    def _silent_past_lease(self, servers: set[str]) -> dict[str, float]:
        if self.heartbeats is None or self.heartbeats.resuming():
            return {}  # the master itself was stopped: the servers get the longest lease
        done = self.recovery.lost if self.recovery is not None else set()
        silent = {s: self.heartbeats.silent_for(s) for s in servers if s not in done}
        return {s: t for s, t in silent.items()
                if t is not None and t > self.heartbeats.lease_s}

    def _recover(self, lost: dict[str, float], what: str) -> Optional[Recovered]:
        """Recover from the `lost` servers {server: seconds silent}, or raise PipelineError."""
        server, silent = max(lost.items(), key=lambda item: item[1])
        layers = ', '.join(p.full_name for p in self.placements() if p.server in lost)
        text = (f'server container {server} has not answered for {silent:.1f} s (dead or '
                f'hung); its layers: {layers or "none"}')
        if self.recovery is None:
            raise PipelineError(f'{what} stopped: {text}. {RESUME_HINT}')
        self.recovery.log(f'{what}: {text}: recovering')
        try:
            return self.recovery.recover_servers(lost)
        except PipelineError as exc:
            raise PipelineError(f'{what} stopped: {text}; {exc}. {RESUME_HINT}') from exc
