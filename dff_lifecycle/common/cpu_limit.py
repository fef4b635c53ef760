"""
How many cores this process may use: its CPU affinity, and its cgroup's CPU quota.

A device of the emulated cluster (or a container runtime) gives a process a fraction of
the machine (`cpu.cfs_quota_us` / `cpu.cfs_period_us`, or v2's `cpu.max`) while every
core stays visible. torch sizes its thread pool by the visible cores, and an OpenMP
worker that spin-waits on a 0.4-core quota burns the quota the layer needed: threads
should follow the quota, not the core count. cgroup v1 and v2; no torch.
"""
from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Optional

from dff_lifecycle.common.cgroups import cgroup_paths, CGROUP_ROOT, read_int


def _ancestors(path: str) -> list[PurePosixPath]:
    """Return the cgroup `path` and every cgroup above it, nearest first."""
    own = PurePosixPath('/') / path.lstrip('/')
    return [own, *own.parents]


def quota_cores(root: Path = CGROUP_ROOT, proc_cgroup: Optional[str] = None) -> Optional[float]:
    """Return the tightest CPU quota over this process's cgroup and its ancestors, in cores."""
    v1, v2 = cgroup_paths('cpu', proc_cgroup)
    quotas = []
    if v1 is not None:
        for group in _ancestors(v1):
            base = root / 'cpu' / str(group).lstrip('/')
            quota = read_int(base / 'cpu.cfs_quota_us')
            period = read_int(base / 'cpu.cfs_period_us')
            if quota is not None and quota > 0 and period:
                quotas.append(quota / period)
    if v2 is not None:
        for group in _ancestors(v2):
            try:
                fields = (root / str(group).lstrip('/') / 'cpu.max').read_text().split()
            except OSError:
                continue
            if len(fields) == 2 and fields[0].isdigit() and fields[1].isdigit():
                quotas.append(int(fields[0]) / max(1, int(fields[1])))
    return min(quotas) if quotas else None


def usable_cores(quota: Optional[float] = None, affinity: Optional[int] = None) -> float:
    """Return the cores this process may use: the least of its affinity and its CPU quota."""
    cores = float(affinity if affinity is not None else len(os.sched_getaffinity(0)))
    quota = quota if quota is not None else quota_cores()
    return min(cores, quota) if quota is not None else cores


def default_threads(cores: Optional[float] = None) -> int:
    """Threads for torch's intra-op pool: the usable cores rounded, at least one."""
    return max(1, round(usable_cores() if cores is None else cores))


def torch_threads(requested: int) -> int:
    """Return `requested` threads, or for 0 (auto) the default for this process's cores."""
    return requested if requested > 0 else default_threads()
