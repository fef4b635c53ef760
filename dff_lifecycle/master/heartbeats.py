"""
Which server containers still beat (pure: arrival times in, lost servers out).

Every container publishes a heartbeat every `HEARTBEAT_PERIOD_S` from its executor
(`nodes/server_container.py`), so a dead process and a hung executor both fall
silent. The DDS participant lease alone takes 20 s to notice a killed process; a
server that has not beaten for `lease_s` is lost, which the supervisor sees within
`lease_s` plus one streaming poll. Like nav2's bond, but one-way: the layers need
nothing from the master to keep working.

A fixed 1 s lease judged a merely slow server lost on a starved 2-core CI machine
(a kill -9 of one container moved the other's layer too), so two guards, after
the accrual detectors of Akka and Cassandra, keep a slow beat from passing for a
dead one, while a server that beat steadily is still lost after `lease_s`:

- jitter: a server is lost after twice the longest gap it showed lately
  (`GAPS_KEPT` beats), never sooner than `lease_s`; a gap long enough to be a
  loss is not learnt from;
- the observer stopped: the master itself stopped (SIGSTOP, a debugger, a paused
  VM; its freeze watch, `common/freeze.py`) heard nobody meanwhile, and its
  middleware may be matching the servers again: silence counts from its resume,
  and nobody is lost within `max_lease_s` of it (`resumed_at`);
- the observer: the master may be the one that is starved (its executor took
  no beats for a while, then takes the backlog in one burst), so a server is
  only judged lost on evidence that the master hears: another server's beat
  that arrived after the silent one's deadline, and at least `EVIDENCE_AGE_S`
  before now (a beat of the same burst is no evidence). "Someone beat lately"
  was not enough: CI saw a master stall of about a second drop a server whose
  last beat was a quarter period older than the other's. With no evidence,
  nobody is lost until `max_lease_s` (4 leases) of silence, which is also when
  servers that all died together, or the only one, are named.

A busy device is not a dead one. The rules above judge silence, and silence is
what a device shows when its Python is busy: a 0.4-core device sending a wide
layer's checkpoint, or a step holding the GIL, fell silent for 1.3 to 3.7 s and
was "recovered" while alive. So the beat has a second channel that no compute
can hold back: the heartbeat topic's DDS liveliness (AUTOMATIC, lease `lease_s`),
which Fast DDS asserts from its own C++ threads (no GIL, no executor). Once the
master has heard a server's liveliness (`liveliness()`):

- **gone** is the middleware's word: liveliness lost (the process is dead,
  frozen or cut off), no beat within the lease, and the observer's evidence as
  above (or `max_lease_s` of it). A steady server that is killed is named about
  1.1 to 1.4 s after its last beat, as before.
- **busy** is silence while the middleware still vouches for the process: never
  a loss, only reported (`busy()`), until `hang_s` without progress, when it is
  judged hung. Progress is a beat whose stamp (the server executor's last tick)
  moved: beats come from their own thread, so an executor stuck in a callback
  beats on with a frozen stamp and is still found out.

Servers whose liveliness was never heard (another rmw, an old server) keep the
silence rules alone.
"""
from __future__ import annotations

from collections import deque
import threading
import time
from typing import Callable, Iterable, Optional

from dff_lifecycle.common.liveness import HEARTBEAT_LEASE_S, HEARTBEAT_PERIOD_S, heartbeat_topic

__all__ = ['HEARTBEAT_LEASE_S', 'HEARTBEAT_PERIOD_S', 'HeartbeatWatch', 'heartbeat_topic']

JITTER_FACTOR = 2.0     # a server is lost after twice its longest recent gap ...
MAX_LEASE_FACTOR = 4.0  # ... and after 4 leases whatever its gaps or anyone's
GAPS_KEPT = 40          # recent gaps per server: about 10 s of beats
BEATS_KEPT = 4          # recent arrival times per server, for the evidence
EVIDENCE_AGE_S = 0.1    # a beat counts as evidence once this old (bursts take ms)
HANG_S = 60.0           # alive by the middleware but no progress this long: hung


class HeartbeatWatch:
    """Last beat of each watched server; thread-safe (callbacks write, the main thread reads)."""

    def __init__(self, servers: Iterable[str], *, lease_s: float = HEARTBEAT_LEASE_S,
                 hang_s: float = HANG_S,
                 clock: Callable[[], float] = time.monotonic,
                 resumed_at: Callable[[], Optional[float]] = lambda: None) -> None:
        self.lease_s = lease_s
        self.resumed_at = resumed_at  # when this process last resumed from a stop
        self.max_lease_s = MAX_LEASE_FACTOR * lease_s
        self.hang_s = max(hang_s, self.max_lease_s)
        self.clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, Optional[float]] = dict.fromkeys(servers)  # None: not heard
        self._gaps: dict[str, deque[float]] = {s: deque(maxlen=GAPS_KEPT) for s in self._last}
        self._arrivals: dict[str, deque[float]] = {s: deque(maxlen=BEATS_KEPT)
                                                   for s in self._last}
        # The middleware's word, once heard: None = alive, else when it said "not alive".
        self._dds: dict[str, Optional[float]] = {}
        self._stamp: dict[str, object] = {}           # the last beat's stamp
        self._progress: dict[str, float] = {}         # when the stamp last moved
        self._longest: dict[str, float] = {}          # the longest gap between two beats

    def beat(self, server: str, stamp: object = None) -> None:
        """Take a beat; `stamp` (the server executor's last tick) tells progress."""
        with self._lock:
            if server not in self._last:
                return
            now = self.clock()
            last = self._last[server]
            if last is not None:
                self._longest[server] = max(self._longest.get(server, 0.0), now - last)
            if last is not None and now - last <= self._tolerance(server):
                self._gaps[server].append(now - last)
            self._last[server] = now
            self._arrivals[server].append(now)
            if stamp is None or stamp != self._stamp.get(server):
                self._progress[server] = now
            self._stamp[server] = stamp

    def answered(self, server: str) -> None:
        """Take an answered call as a beat with progress, and as proof that the server lives."""
        self.beat(server, stamp=('answered', self.clock()))
        with self._lock:
            if server in self._dds:
                self._dds[server] = None

    def liveliness(self, server: str, alive: bool) -> None:
        """Take the middleware's word on whether the heartbeat writer lives (DDS liveliness)."""
        with self._lock:
            if server not in self._last:
                return
            if alive:
                self._dds[server] = None
            elif self._dds.get(server) is None:
                self._dds[server] = self.clock()

    def longest_silences(self) -> dict[str, float]:
        """Return {server: the longest gap between two of its beats so far}."""
        with self._lock:
            return dict(self._longest)

    def busy(self) -> dict[str, float]:
        """{server: seconds silent} of servers silent past the lease whose process lives."""
        now = self.clock()
        with self._lock:
            return {s: now - t for s, t in self._last.items()
                    if t is not None and s in self._dds and self._dds[s] is None
                    and now - self._counted_from(t) > self.lease_s
                    and not self._is_lost(s, now)}

    def vouched(self, server: str) -> bool:
        """Return True when the middleware said the server's process lives (not retracted)."""
        with self._lock:
            return server in self._dds and self._dds[server] is None

    def tolerance(self, server: str) -> float:
        """How long `server` may be silent before it is lost (observer heard others)."""
        with self._lock:
            return self._tolerance(server)

    def lost(self) -> dict[str, float]:
        """{server: seconds since its last beat} of the servers judged lost now."""
        now = self.clock()
        with self._lock:
            return {s: now - t for s, t in self._last.items()
                    if t is not None and self._is_lost(s, now)}

    def silent_for(self, server: str) -> Optional[float]:
        """Seconds since `server` last beat, or since this process resumed; None: never heard."""
        now = self.clock()
        with self._lock:
            last = self._last.get(server)
            return None if last is None else now - self._counted_from(last)

    def resuming(self) -> bool:
        """Return True within `max_lease_s` of this process's resume from a stop."""
        resumed = self.resumed_at()
        return resumed is not None and self.clock() - resumed <= self.max_lease_s

    def last_beat(self, server: str) -> Optional[float]:
        """Clock time of the server's last beat; None if never heard."""
        with self._lock:
            return self._last.get(server)

    def alive(self) -> list[str]:
        """Return the servers heard and not lost, in the order they were given."""
        now = self.clock()
        with self._lock:
            return [s for s, t in self._last.items()
                    if t is not None and not self._is_lost(s, now)]

    def heard(self) -> set[str]:
        with self._lock:
            return {s for s, t in self._last.items() if t is not None}

    # The lock is held by the callers of these.
    def _counted_from(self, last: float) -> float:
        """Silence counts from the last beat, or from this process's resume after a stop."""
        resumed = self.resumed_at()
        return last if resumed is None else max(last, resumed)

    def _tolerance(self, server: str) -> float:
        longest = max(self._gaps[server], default=0.0)
        return min(self.max_lease_s, max(self.lease_s, JITTER_FACTOR * longest))

    def _is_lost(self, server: str, now: float) -> bool:
        last = self._last[server]
        if last is None:
            return False
        resumed = self.resumed_at()
        if resumed is not None and now - resumed <= self.max_lease_s:  # resuming()
            # This process was stopped (SIGSTOP, a debugger, a paused VM): every server went
            # unheard meanwhile, and the middleware may have dropped them and be matching them
            # again. Each gets the longest lease, from the resume, to be heard.
            return False
        last = self._counted_from(last)
        silent = now - last
        if server in self._dds:
            return self._is_lost_by_liveliness(server, now, last)
        if silent > self.max_lease_s:
            return True
        if silent <= self._tolerance(server):
            return False
        return self._evidence(server, last + self._tolerance(server), now)

    def _is_lost_by_liveliness(self, server: str, now: float, last: float) -> bool:
        gone_since = self._dds[server]
        if gone_since is None:  # the process lives: busy, or hung once progress stops
            return now - self._progress.get(server, last) > self.hang_s
        if now - last <= self.lease_s:
            return False
        if now - gone_since > self.max_lease_s:
            return True
        return self._evidence(server, max(gone_since, last + self.lease_s), now)

    def _evidence(self, server: str, deadline: float, now: float) -> bool:
        """Another server's beat taken after `deadline`, old enough not to be one burst."""
        return any(deadline <= t <= now - EVIDENCE_AGE_S
                   for other, times in self._arrivals.items() if other != server
                   for t in times)
