"""
Recovery: a lost server's layers move to the living ones, and training goes on.

The supervisor decides *that* something is lost; this part decides *what
follows*:

- a server that stopped beating (dead, hung or cut off): its layers are
  re-planned onto the servers still beating where they fit (`plan.move_layers`,
  from the memory each server says it may still allocate), created there from
  the master's newest copy of their checkpoints (`checkpoints.py`), and brought
  up; with no server left beating, it waits for a respawned one; a layer that
  fits nowhere stops the run with a one-line error, and the master writes its
  checkpoint copies to disk first;
- a layer finalized by hand on a living server: it is created again on the same
  server, which reloads the weights its shutdown saved;
- a lost server that beats again (a hung process resumed, a link back up, a
  respawn): it is fenced, i.e. the model's stale layers on it are deleted
  without saving, so no layer runs twice.

Fencing comes before moving, so that two nodes of one name never answer at
once: the lost server is asked once more (`probe`); if it answers it was slow,
not lost, and its layers stay where they are. If it does not, the master waits
(at most `FENCE_TIMEOUT_S`, the participant lease and some) until the lost
layers have left the ROS graph, i.e. the middleware has dropped their process,
before it creates their copies elsewhere; a process the middleware still vouches
for (judged hung: its executor is stuck) cannot answer while it stays stuck, and
is fenced by deletion if it ever beats again.

"Consistent" for FF: every layer trains on its own loss, so layers need not
agree on one global step. A restored layer resumes from its checkpoint; the
batches it trained after that checkpoint and whose results were already
acknowledged are not trained again, which costs that one layer at most one
checkpoint interval. The streamer resends every batch still in flight; the
layers that trained one already forward it without a second update.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
import time
from typing import Callable, Iterable, Optional, Protocol

from dff_lifecycle.core.run.weights import load_state_bytes, WeightFileError
from dff_lifecycle.master.checkpoints import CheckpointKeeper
from dff_lifecycle.master.errors import PipelineError
from dff_lifecycle.master.heartbeats import HeartbeatWatch
from dff_lifecycle.master.pipeline_watch import PipelineWatch
from dff_lifecycle.master.plan import DistributionPlan, LayerPlacement, move_layers, NoRoom

Log = Callable[[str], None]

PROBE_TIMEOUT_S = 1.0   # a lost server asked once more before its layers move
FENCE_TIMEOUT_S = 5.0   # waiting for lost layers to leave the graph (participant lease: 3 s)


@dataclass(frozen=True)
class Recovered:
    """
    What the streamer must resend after a recovery.

    through: {stream: seq} that every restored layer had trained by its checkpoint
    (a stream not named: none of it); None: the layers lost nothing, only the items
    in flight go out again.
    """

    through: Optional[dict[str, int]] = field(default_factory=dict)

    def replay_after(self, stream: str) -> Optional[int]:
        return None if self.through is None else self.through.get(stream, -1)


def trained_through(states: list[Optional[dict]]) -> dict[str, int]:
    """{stream: the highest seq every one of the checkpoints trained} (None: no checkpoint)."""
    if not states or any(s is None for s in states):
        return {}
    per_layer = []
    for state in states:
        last: dict[str, int] = {}
        for entry in state.get('trained', ()):
            if isinstance(entry, (list, tuple)) and len(entry) == 2:
                stream, seq = entry
                if isinstance(stream, str) and isinstance(seq, int):
                    last[stream] = max(seq, last.get(stream, -1))
        per_layer.append(last)
    streams = set().union(*per_layer)
    return {s: min(layer.get(s, -1) for layer in per_layer) for s in streams}


class LayerMover(Protocol):
    """What recovery needs of the deployer."""

    def move_in(self, model: str, moved: list[LayerPlacement],
                checkpoints: dict[str, bytes]) -> None: ...

    def delete_model(self, model: str, servers: list[str], quiet: bool = False,
                     save: bool = True) -> None: ...

    def probe(self, server: str, timeout_s: float) -> bool: ...

    def memory_room(self, server: str, timeout_s: float) -> Optional[int]: ...

    def hosted(self, server: str, model: str, timeout_s: float
               ) -> Optional[dict[str, str]]: ...

    def present_nodes(self) -> set[str]: ...


class Recovery:
    """Keeps the current plan; moves layers off lost servers and fences returning ones."""

    def __init__(self, plan: DistributionPlan, servers: Iterable[str], deployer: LayerMover,
                 heartbeats: HeartbeatWatch, watch: PipelineWatch,
                 keeper: Optional[CheckpointKeeper], *, timeout_s: float,
                 on_replan: Callable[[DistributionPlan], None] = lambda _plan: None,
                 log: Log = print, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep,
                 keep_dir: Optional[Path] = None) -> None:
        self.plan = plan
        self.servers = list(servers)
        self.deployer = deployer
        self.heartbeats = heartbeats
        self.watch = watch
        self.keeper = keeper
        self.timeout_s = timeout_s
        self.on_replan = on_replan
        self.log = log
        self.clock = clock
        self.sleep = sleep
        self.keep_dir = keep_dir      # where checkpoint copies go when a recovery cannot fit
        self.lost: set[str] = set()
        self._fenced_at: dict[str, Optional[float]] = {}  # lost server -> its last beat then
        self.events: list[dict] = []  # what happened, for the run's metrics

    def live_servers(self) -> list[str]:
        return [s for s in self.servers if s not in self.lost]

    # ---------------------------------------------------------------- lost servers
    def recover_servers(self, lost: Iterable[str]) -> Optional[Recovered]:
        """
        Move every layer of the `lost` servers.

        None if every one of them answered after all (slow, not lost: nothing moves).
        Raise PipelineError if the move cannot be done.
        """
        started = self.clock()
        lost = set(lost) - self.lost
        for server in sorted(lost):
            if self.deployer.probe(server, PROBE_TIMEOUT_S):
                self.heartbeats.answered(server)
                self.events.append({'false_loss': server})
                self.log(f'{server} answered a call: slow, not lost; its layers stay')
                lost.discard(server)
        if not lost:
            return None
        self._fence({p.full_name for p in self.plan.placements if p.server in lost},
                    [s for s in lost if not self.heartbeats.vouched(s)])
        for server in lost:
            self._fenced_at[server] = self.heartbeats.last_beat(server)
        self.lost |= lost
        moving = [p for p in self.plan.placements if p.server in lost]
        targets = [s for s in self.heartbeats.alive() if s not in self.lost]
        if moving and not targets:
            targets = [self._wait_for_return()]
        # This call's `lost` (earlier ones were moved already); not self.lost, which a
        # fenced respawned server has left again to take its layers back. A layer goes only
        # where it fits: a move onto a device near its cap would end in an OOM kill.
        rooms = {t: self.deployer.memory_room(t, PROBE_TIMEOUT_S) for t in targets}
        held = ({p.full_name: self.keeper.get(p.full_name) for p in moving}
                if self.keeper is not None else {})
        try:
            plan, moved = move_layers(self.plan, lost, targets, rooms,
                                      {n: 2 * len(c.data) for n, c in held.items() if c})
        except NoRoom as exc:
            raise PipelineError(f'recovery of {", ".join(sorted(lost))} stopped: {exc}; '
                                f'{self._keep_checkpoints()}') from exc
        through = self._install(plan, moved)
        seconds = self.clock() - started
        self.events.append({'lost': sorted(lost), 'moved': {p.full_name: p.server
                                                            for p in moved},
                            'seconds': round(seconds, 3)})
        if moved:
            self.log('recovered: ' + ', '.join(f'{p.full_name} now on {p.server}'
                                               for p in moved) + f' ({seconds:.1f} s)')
        return Recovered(through)

    def _keep_checkpoints(self) -> str:
        """Write the master's checkpoint copies to `keep_dir`; say where every copy is."""
        own = "each layer's own checkpoint stays on its server's disk"
        if self.keeper is None or self.keep_dir is None:
            return own
        try:
            files = self.keeper.save(self.keep_dir)
        except OSError as exc:
            return f'{own}; the master could not write its copies: {exc}'
        if not files:
            return own
        copies = 'copy' if len(files) == 1 else 'copies'
        return f'{own}; the master wrote its {len(files)} {copies} to {self.keep_dir}'

    def _fence(self, names: set[str], gone: list[str]) -> None:
        """Wait until the lost layers left the graph, so their copies never share a name."""
        if not names or not gone:
            return
        deadline = self.clock() + FENCE_TIMEOUT_S
        while True:
            stale = names & self.deployer.present_nodes()
            if not stale:
                return
            if self.clock() > deadline:
                self.log(f'{", ".join(sorted(stale))} still in the ROS graph after '
                         f'{FENCE_TIMEOUT_S:g} s: moving anyway; they are deleted if their '
                         'server beats again')
                return
            self.sleep(0.1)

    def _wait_for_return(self) -> str:
        """No server left beating: wait for one (a respawned container) and fence it."""
        self.log(f'no server container left beating: waiting up to {self.timeout_s:g} s for '
                 'one to come back (dff_launch respawns them)')
        deadline = self.clock() + self.timeout_s
        while self.clock() < deadline:
            back = self.fence_returned()
            if back:
                return back[0]
            self.sleep(0.1)
        raise PipelineError(f'no server container came back within {self.timeout_s:g} s; '
                            f'lost: {", ".join(sorted(self.lost))}')

    def _install(self, plan: DistributionPlan, moved: list[LayerPlacement]) -> dict[str, int]:
        """Create the moved layers; {stream: seq} all of them had trained (see Recovered)."""
        checkpoints: dict[str, bytes] = {}
        states: list[Optional[dict]] = []
        for p in moved:
            held = self.keeper.get(p.full_name) if self.keeper is not None else None
            state = None
            if held is not None:
                try:
                    state = load_state_bytes(held.data, f'checkpoint of {p.full_name}')
                except WeightFileError as exc:
                    self.log(f'{p.full_name}: {exc}; not using it')
                    held = None
            states.append(state)
            if held is not None:
                checkpoints[p.full_name] = held.data
                self.log(f'{p.full_name}: moving to {p.server} from its checkpoint at '
                         f'{held.batches_seen} batches')
            else:
                self.log(f'{p.full_name}: moving to {p.server}; no checkpoint copy held, '
                         "it starts from that server's disk (or its seeded initialisation)")
        self.plan = plan
        self.on_replan(plan)
        for p in moved:
            self.watch.move(p.unit, p.server)
        if moved:
            self.deployer.move_in(plan.model, moved, checkpoints)
            self._mark_active(moved)
        return trained_through(states)

    def _mark_active(self, placements: list[LayerPlacement]) -> None:
        # Bring-up checked 'active' with get_state; the new nodes' first status messages
        # may precede the master's match with their publishers, so say it for them.
        for p in placements:
            self.watch.set_state(p.unit, 'active', recreated=True)

    # --------------------------------------------------------------- returning ones
    def fence_returned(self) -> list[str]:
        """Delete the model's stale layers on lost servers that beat again; those servers."""
        back = []
        for server, fenced_at in list(self._fenced_at.items()):
            last = self.heartbeats.last_beat(server)
            if last is None or (fenced_at is not None and last <= fenced_at):
                continue
            if server not in self.heartbeats.alive():
                continue
            self.log(f'{server} beats again: removing its stale layers of {self.plan.model} '
                     '(they were moved)')
            self.deployer.delete_model(self.plan.model, [server], quiet=True, save=False)
            del self._fenced_at[server]
            self.lost.discard(server)
            back.append(server)
        return back

    # ------------------------------------------------------------ finalized layers
    def still_hosted(self, placements: list[LayerPlacement]) -> set[str]:
        """
        Of `placements`, the layers that their server says it still hosts, active.

        Asking also has each server publish its entry in the ROS graph again: a master
        stopped past the participant lease drops its peers, matches them again, and does not
        get their graph entries back, so their layers look gone while they train on.
        """
        hosted: set[str] = set()
        for server in sorted({p.server for p in placements}):
            states = self.deployer.hosted(server, self.plan.model, PROBE_TIMEOUT_S) or {}
            hosted |= {p.full_name for p in placements
                       if p.server == server and states.get(p.full_name) == 'active'}
        return hosted

    def recreate(self, placements: list[LayerPlacement], why: str = 'finalized') -> Recovered:
        """Create finalized layers again where they were; they reload their shutdown save."""
        started = self.clock()
        names = ', '.join(p.full_name for p in placements)
        self.log(f'{names} {why}: creating again on the same server(s)')
        deadline = self.clock() + self.timeout_s
        while True:
            try:
                self.deployer.move_in(self.plan.model, placements, {})
                break
            except PipelineError as exc:
                # The server removes a finalized node within a heartbeat period.
                if 'already exists' not in str(exc) or self.clock() > deadline:
                    raise
                self.sleep(0.1)
        self._mark_active(placements)
        self.events.append({'finalized': [p.full_name for p in placements],
                            'seconds': round(self.clock() - started, 3)})
        return Recovered(None)  # shutdown saved everything they trained
