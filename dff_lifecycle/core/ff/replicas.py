"""
Copies of one layer trained on alternate batches, their weights averaged now and then.

A stage that is the pipeline's bottleneck can run as n replicas on n devices: replica k
trains the batches whose seq is k modulo n, so each takes 1/n of the stage's work. Every
`sync_every` batches of the stream the replicas exchange a snapshot of their weights
(parameters and float buffers, e.g. BatchNorm's running statistics; optimiser state stays
local, as in local SGD) and each moves to the mean:

    W_k <- W_k + (mean_j S_j - S_k)

where S_j is replica j's snapshot of that round. Applied when the peers' snapshots arrive,
without waiting for them: the batches a replica trained after its snapshot are kept on top
of the mean, so the replicas' sum is unchanged by a round and their difference shrinks to
what each trained since the round's snapshot. At the stream's last batch nothing trains
after the snapshot, so every replica ends with exactly the mean. Pure torch, no ROS.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn, Tensor


def _tensors(module: nn.Module) -> list[Tensor]:
    """Return the module's parameters and floating buffers, in state_dict order."""
    return [t for t in module.state_dict(keep_vars=True).values() if t.is_floating_point()]


def flat_state(module: nn.Module) -> Tensor:
    """Return a float32 copy of every parameter and float buffer of `module`, flattened."""
    parts = [t.detach().reshape(-1).to(torch.float32) for t in _tensors(module)]
    return torch.cat(parts).cpu() if parts else torch.zeros(0)


def state_size(module: nn.Module) -> int:
    return sum(t.numel() for t in _tensors(module))


def move_to_mean(module: nn.Module, snapshots: Sequence[Tensor], own: int) -> None:
    """
    One averaging round: add (mean of `snapshots`) - `snapshots[own]` to the module's weights.

    `snapshots` are every replica's flat_state of the round, in replica order (so every
    replica sums them in one order); `own` is this replica's. Computed as (W - own) + mean
    in float64: a replica that trained nothing since its snapshot gets the mean exactly, the
    same bits as its peers. ValueError when a snapshot does not fit the module.
    """
    size = state_size(module)
    for i, snapshot in enumerate(snapshots):
        if snapshot.dim() != 1 or snapshot.numel() != size:
            raise ValueError(f'the snapshot of replica {i} has {snapshot.numel()} values; '
                             f'this layer has {size}')
    mean = torch.zeros(size, dtype=torch.float64)
    for snapshot in snapshots:
        mean += snapshot.to(torch.float64)
    mean /= len(snapshots)
    base = snapshots[own].to(torch.float64)
    offset = 0
    with torch.no_grad():
        for tensor in _tensors(module):
            n = tensor.numel()
            part = slice(offset, offset + n)
            moved = (tensor.detach().reshape(-1).to(torch.float64).cpu() - base[part]) + mean[part]
            tensor.copy_(moved.view_as(tensor).to(tensor.dtype))
            offset += n


def owner_of(seq: int, replicas: int) -> int:
    """Return the replica that trains batch `seq`."""
    return seq % replicas
