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
- the observer: the master may be the one that is starved (its executor took
  no beats for a while, then takes the backlog in one burst), so a server is
  only judged lost on evidence that the master hears: another server's beat
  that arrived after the silent one's deadline, and at least `EVIDENCE_AGE_S`
  before now (a beat of the same burst is no evidence). "Someone beat lately"
  was not enough: CI saw a master stall of about a second drop a server whose
  last beat was a quarter period older than the other's. With no evidence,
  nobody is lost until `max_lease_s` (4 leases) of silence, which is also when
  servers that all died together, or the only one, are named.
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


class HeartbeatWatch:
    """Last beat of each watched server; thread-safe (callbacks write, the main thread reads)."""

    def __init__(self, servers: Iterable[str], *, lease_s: float = HEARTBEAT_LEASE_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.lease_s = lease_s
        self.max_lease_s = MAX_LEASE_FACTOR * lease_s
        self.clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, Optional[float]] = dict.fromkeys(servers)  # None: not heard
        self._gaps: dict[str, deque[float]] = {s: deque(maxlen=GAPS_KEPT) for s in self._last}
        self._arrivals: dict[str, deque[float]] = {s: deque(maxlen=BEATS_KEPT)
                                                   for s in self._last}

    def beat(self, server: str) -> None:
        with self._lock:
            if server not in self._last:
                return
            now = self.clock()
            last = self._last[server]
            if last is not None and now - last <= self._tolerance(server):
                self._gaps[server].append(now - last)
            self._last[server] = now
            self._arrivals[server].append(now)

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
        """Seconds since `server` last beat; None if never heard."""
        now = self.clock()
        with self._lock:
            last = self._last.get(server)
        return None if last is None else now - last

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

    # The lock is held by the callers of these two.
    def _tolerance(self, server: str) -> float:
        longest = max(self._gaps[server], default=0.0)
        return min(self.max_lease_s, max(self.lease_s, JITTER_FACTOR * longest))

    def _is_lost(self, server: str, now: float) -> bool:
        last = self._last[server]
        if last is None:
            return False
        silent = now - last
        if silent > self.max_lease_s:
            return True
        if silent <= self._tolerance(server):
            return False
        deadline = last + self._tolerance(server)
        return any(deadline <= t <= now - EVIDENCE_AGE_S
                   for other, times in self._arrivals.items() if other != server
                   for t in times)
