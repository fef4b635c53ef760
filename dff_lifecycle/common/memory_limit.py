"""
How much memory this process may still take: its cgroup's limit, or the machine's.

A device of the emulated cluster (or a container runtime) caps a process with a
cgroup; exceeding it ends in a silent OOM kill. Reading the cap first lets a
process refuse work that cannot fit, with a message. cgroup v1 and v2; no torch.
"""
from __future__ import annotations

from pathlib import Path
import threading
from typing import Callable, Optional

from dff_lifecycle.common.cgroups import cgroup_paths, CGROUP_ROOT, read_int

UNLIMITED = 1 << 60  # v1 reports "no limit" as a huge number


def cgroup_room(root: Path = CGROUP_ROOT,
                proc_cgroup: Optional[str] = None) -> Optional[tuple[int, int]]:
    """Return (limit, in use) in bytes of this process's memory cgroup; None: unlimited."""
    v1, v2 = cgroup_paths('memory', proc_cgroup)
    candidates = []
    if v1 is not None:
        base = root / 'memory' / v1.lstrip('/')
        candidates.append((base / 'memory.limit_in_bytes', base / 'memory.usage_in_bytes'))
    if v2 is not None:
        base = root / v2.lstrip('/')
        candidates.append((base / 'memory.max', base / 'memory.current'))
    for limit_file, usage_file in candidates:
        limit = read_int(limit_file)
        if limit is not None and limit < UNLIMITED:
            return limit, read_int(usage_file) or 0
    return None


def machine_available(meminfo: Optional[str] = None) -> Optional[int]:
    """Return MemAvailable of /proc/meminfo, in bytes."""
    try:
        text = meminfo if meminfo is not None else Path('/proc/meminfo').read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith('MemAvailable:'):
            return int(line.split()[1]) * 1024
    return None


def available_bytes() -> Optional[int]:
    """Return what this process can still allocate: the least of its cgroup's and the machine's."""
    room = cgroup_room()
    options = [x for x in (machine_available(),
                           None if room is None else room[0] - room[1]) if x is not None]
    return min(options) if options else None


def mib(n: int) -> str:
    return f'{n / (1 << 20):,.0f} MiB'


class MemoryBudget:
    """
    The memory this process's layers have claimed, against what it could allocate at start.

    A layer allocates its gradients, optimiser state and activations only once it
    trains, so the room a second layer sees at its configure overstates what will be
    left (two layers of one container each passed the check alone, and together the
    container was OOM-killed). Each layer therefore claims its whole need when it is
    configured and gives it back when it is cleaned up: the room is the least of what
    the process may allocate now and what it could at start less every claim.
    """

    def __init__(self, available: Callable[[], Optional[int]] = available_bytes) -> None:
        self._available = available
        self._at_start = available()  # taken when the process is idle, before any layer
        self._claims: dict[str, int] = {}
        self._lock = threading.Lock()

    def room(self) -> Optional[int]:
        """Bytes a new layer may still claim; None: unknown (no limit known)."""
        with self._lock:
            return self._room()

    def _room(self) -> Optional[int]:
        now = self._available()
        left = None if self._at_start is None else self._at_start - sum(self._claims.values())
        options = [x for x in (now, left) if x is not None]
        return max(0, min(options)) if options else None

    def claim(self, name: str, needed: int, refuse: Callable[[int], None]) -> None:
        """Claim `needed` bytes for `name`; `refuse(room)`, which raises, if they do not fit."""
        with self._lock:
            self._claims.pop(name, None)  # a layer configured again claims anew
            room = self._room()
            if room is not None and needed > room:
                refuse(room)
            self._claims[name] = needed

    def release(self, name: str) -> None:
        with self._lock:
            self._claims.pop(name, None)


_PROCESS_BUDGET: Optional[MemoryBudget] = None


def process_budget() -> MemoryBudget:
    """Return the budget of this process, made at the first call (a container makes it idle)."""
    global _PROCESS_BUDGET
    if _PROCESS_BUDGET is None:
        _PROCESS_BUDGET = MemoryBudget()
    return _PROCESS_BUDGET
