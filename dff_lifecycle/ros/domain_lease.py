"""
ROS_DOMAIN_ID leases: one domain per test, benchmark or run on a machine, never shared.

Tests and benchmarks both start DFF systems on one machine, often at once (CI runs a
benchmark beside the suite; a developer runs one while the tests run). Each takes a
domain id through a lock file under /tmp; the kernel drops the lock when its process
dies, so a crashed run leaves nothing held. Benchmarks once picked `70 + pid % 30`,
which overlapped the tests' ids.
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

LOCK_DIR = Path('/tmp/dff_ros_domains')
# 0 is everybody's default domain; Fast DDS ports allow ids up to 101 here.
DOMAIN_IDS = range(1, 102)

_leases: dict[int, IO[str]] = {}


def allocate_domain_id() -> int:
    """Lease a domain id no other process holds; kept until release or process exit."""
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    start = os.getpid() % len(DOMAIN_IDS)  # spread concurrent runs over the range
    for step in range(len(DOMAIN_IDS)):
        domain_id = DOMAIN_IDS[(start + step) % len(DOMAIN_IDS)]
        if domain_id in _leases:
            continue
        lock = open(LOCK_DIR / f'{domain_id}.lock', 'w')
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        _leases[domain_id] = lock
        return domain_id
    raise RuntimeError(f'all ROS domain ids {DOMAIN_IDS.start}..{DOMAIN_IDS.stop - 1} are in use')


def release_domain_id(domain_id: int) -> None:
    """Give a leased domain id back (no-op if it is not leased here)."""
    lock = _leases.pop(domain_id, None)
    if lock is not None:
        lock.close()  # closing the file drops the flock
