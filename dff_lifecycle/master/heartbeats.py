"""
Which server containers still beat (pure: arrival times in, lost servers out).

Every container publishes a heartbeat every `HEARTBEAT_PERIOD_S` from its executor
(`nodes/server_container.py`), so a dead process and a hung executor both fall
silent. The DDS participant lease alone takes 20 s to notice a killed process; a
server that has not beaten for `lease_s` is lost, which the supervisor sees within
`lease_s` plus one streaming poll. Like nav2's bond, but one-way: the layers need
nothing from the master to keep working.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Iterable, Optional

from dff_lifecycle.common.liveness import HEARTBEAT_LEASE_S, HEARTBEAT_PERIOD_S, heartbeat_topic

__all__ = ['HEARTBEAT_LEASE_S', 'HEARTBEAT_PERIOD_S', 'HeartbeatWatch', 'heartbeat_topic']


class HeartbeatWatch:
    """Last beat of each watched server; thread-safe (callbacks write, the main thread reads)."""

    def __init__(self, servers: Iterable[str], *, lease_s: float = HEARTBEAT_LEASE_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.lease_s = lease_s
        self.clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, Optional[float]] = dict.fromkeys(servers)  # None: not heard

    def beat(self, server: str) -> None:
        with self._lock:
            if server in self._last:
                self._last[server] = self.clock()

    def lost(self) -> dict[str, float]:
        """{server: seconds since its last beat} of the servers silent for over lease_s."""
        now = self.clock()
        with self._lock:
            return {s: now - t for s, t in self._last.items()
                    if t is not None and now - t > self.lease_s}

    def last_beat(self, server: str) -> Optional[float]:
        """Clock time of the server's last beat; None if never heard."""
        with self._lock:
            return self._last.get(server)

    def alive(self) -> list[str]:
        """Return the servers heard within the lease, in the order they were given."""
        now = self.clock()
        with self._lock:
            return [s for s, t in self._last.items() if t is not None and now - t <= self.lease_s]

    def heard(self) -> set[str]:
        with self._lock:
            return {s for s, t in self._last.items() if t is not None}
