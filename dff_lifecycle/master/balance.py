"""
Balanced placement: contiguous blocks of stages whose slowest block is as light as it can be.

A pipeline of FF layers runs at the pace of its slowest device: with every batch in
flight, each device works on its own block of stages, and the batch rate is one over
the largest block's time. Given each stage's measured cost (seconds per training
batch, `core.stage_costs`) and optionally each server's relative speed, the blocks
that minimise the largest block time are found exactly by dynamic programming over
(stages placed, servers used) — the linear partition problem; n stages and k servers
cost O(n^2 k), nothing for the models this system places.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence


def balanced_blocks(costs: Sequence[float], servers: int,
                    speeds: Optional[Sequence[float]] = None) -> list[int]:
    """
    Return the server index (0 .. servers-1, in order) of each stage.

    Blocks are contiguous and in server order; a block's time is its stages' summed cost
    divided by its server's speed (default 1 for all). Every server gets at least one
    stage while there are stages enough (more devices never slow a pipeline down), and
    of equally good partitions the first found is taken, so the result is deterministic.
    """
    n = len(costs)
    if servers < 1:
        raise ValueError(f'servers must be >= 1, got {servers}')
    if any(c < 0 or not math.isfinite(c) for c in costs):
        raise ValueError(f'stage costs must be finite and >= 0, got {list(costs)}')
    speeds = list(speeds) if speeds is not None else [1.0] * servers
    if len(speeds) != servers or any(s <= 0 for s in speeds):
        raise ValueError(f'need one speed > 0 per server, got {speeds}')
    if n == 0:
        return []
    prefix = [0.0]
    for cost in costs:
        prefix.append(prefix[-1] + cost)
    used = min(servers, n)
    inf = math.inf
    # best[k][i]: least largest block time placing the first i stages on the first k servers
    # (each of them non-empty); cut[k][i]: where the k-th block starts.
    best = [[inf] * (n + 1) for _ in range(used + 1)]
    cut = [[0] * (n + 1) for _ in range(used + 1)]
    best[0][0] = 0.0
    for k in range(1, used + 1):
        for i in range(k, n + 1):
            for j in range(k - 1, i):
                value = max(best[k - 1][j], (prefix[i] - prefix[j]) / speeds[k - 1])
                if value < best[k][i] - 1e-12:
                    best[k][i], cut[k][i] = value, j
    chosen = [0] * n
    i = n
    for k in range(used, 0, -1):
        j = cut[k][i]
        for stage in range(j, i):
            chosen[stage] = k - 1
        i = j
    return chosen


def block_times(costs: Sequence[float], chosen: Sequence[int], servers: int,
                speeds: Optional[Sequence[float]] = None) -> list[float]:
    """Each server's time per batch under `chosen` (the largest is the pipeline's pace)."""
    speeds = list(speeds) if speeds is not None else [1.0] * servers
    times = [0.0] * servers
    for cost, server in zip(costs, chosen):
        times[server] += cost / speeds[server]
    return times
