"""
ROS_DOMAIN_ID leases: one domain per test, benchmark or run on a machine, never shared.

Tests and benchmarks both start DFF systems on one machine, often at once (CI runs a
benchmark beside the suite; a developer runs one while the tests run). Each takes a
domain id through a lock file under /tmp; the kernel drops the lock when its process
dies, so a crashed run leaves nothing held. Benchmarks once picked `70 + pid % 30`,
which overlapped the tests' ids.

A released id rests before it is leased again: a process killed in one test (kill -9
of a server container) stays in its domain's graph for the 20 s participant lease, and
the next test in the same pytest process used to get the same id at once (the search
starts at pid % 101): its master then met the ghost of the last test's `server_2`
beside its own, and judged the living one by the ghost's liveliness (a suite flake of
the hung-server test, one run in six). A lease file's mtime is its last lease or
release; ids touched within `REST_S` are taken only when no other is free.
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path
import time
from typing import IO

LOCK_DIR = Path('/tmp/dff_ros_domains')
# 0 is everybody's default domain; Fast DDS ports allow ids up to 101 here.
DOMAIN_IDS = range(1, 102)
# Longer than Fast DDS's participant lease (20 s): a killed process's ghost has gone.
REST_S = 25.0

_leases: dict[int, IO[str]] = {}


def allocate_domain_id() -> int:
    """Lease a domain id no other process holds; kept until release or process exit."""
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    start = os.getpid() % len(DOMAIN_IDS)  # spread concurrent runs over the range
    order = [DOMAIN_IDS[(start + step) % len(DOMAIN_IDS)] for step in range(len(DOMAIN_IDS))]
    for rested_only in (True, False):
        for domain_id in order:
            if domain_id in _leases or (rested_only and not _rested(domain_id)):
                continue
            lock = open(LOCK_DIR / f'{domain_id}.lock', 'w')  # touches it: leased now
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
        try:
            os.utime(lock.fileno())  # released now: it rests REST_S before the next lease
        except OSError:
            pass
        lock.close()  # closing the file drops the flock


def _rested(domain_id: int) -> bool:
    """Return whether the id's last lease or release is over REST_S ago (or never was)."""
    try:
        touched = (LOCK_DIR / f'{domain_id}.lock').stat().st_mtime
    except OSError:
        return True
    return time.time() - touched >= REST_S
