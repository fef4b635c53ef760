"""
What a layer (or a whole model) needs in memory before it is built (pure).

Weights and their gradients, the optimiser's per-weight state (Adam: two moments
plus the two weight-sized temporaries its step makes; plain SGD: none), and the
activations of the larger of a training batch and an inference batch.
"""
from __future__ import annotations

from typing import Optional

from dff_lifecycle.common.memory_limit import available_bytes, mib
from dff_lifecycle.core.ff.layers import LAYER_TYPES

FLOAT_BYTES = 4
# Weight-sized tensors an optimiser keeps (Adam's two moments) and makes for the length of
# a step: torch's single-tensor Adam computes sqrt(v), then sqrt(v) / c, before adding eps
# in place (measured: a step peaks 2 weight sizes above the state). Plain SGD's step makes
# none, so its peak is the backward's: the gradient plus a workspace of about 0.1 weight
# sizes (measured 0.105 on dense shards of 611 and 1,152 MiB; counted as 0.15, for the page
# cache and shared memory that a device's memory cgroup charges as well). Without it a
# split layer's shards claimed 2,674 MiB, needed about 2,690 and were OOM-killed.
OPTIMIZER_MOMENTS = {'adam': 2, 'adamw': 2, 'sgd': 0}
STEP_TEMPORARIES = {'adam': 2, 'adamw': 2, 'sgd': 0.15}
OPTIMIZER_SLOTS = {name: OPTIMIZER_MOMENTS[name] + STEP_TEMPORARIES[name]
                   for name in OPTIMIZER_MOMENTS}  # besides weights and grads
# Forward + backward of a batch keep about this many activation-sized tensors alive.
ACTIVATION_COPIES = 6
# Torch's allocator and fragmentation on top of the count above.
SLACK = 1.05


class DoesNotFit(MemoryError):
    """The memory a model or layer needs is more than this process may allocate."""


def state_bytes(in_features: int, out_features: int, optimizer: str = 'adam',
                params: Optional[int] = None) -> int:
    """
    Return the bytes of weights, gradients and optimiser state at the peak of a step.

    The optimiser's share counts what it keeps and the temporaries its step makes.

    `params` is the layer's parameter count; None: a dense layer's (in + 1) * out.
    """
    params = in_features * out_features + out_features if params is None else params
    return int(params * (2 + OPTIMIZER_SLOTS.get(optimizer, 4)) * FLOAT_BYTES)


def persistent_state_bytes(params: int, optimizer: str = 'adam') -> int:
    """Weights, gradients and what the optimiser keeps between steps (no temporaries)."""
    return params * (2 + OPTIMIZER_MOMENTS.get(optimizer, 2)) * FLOAT_BYTES


def activation_bytes(in_features: int, out_features: int, batch_size: int = 100,
                     infer_rows: int = 10_000) -> int:
    """Return the larger of a training batch (positives, negatives) and an inference batch."""
    width = in_features + out_features
    training = 2 * batch_size * width * ACTIVATION_COPIES
    inference = infer_rows * width * 2  # input and output, no gradients kept
    return max(training, inference) * FLOAT_BYTES


def dense_layer_bytes(in_features: int, out_features: int, optimizer: str = 'adam',
                      batch_size: int = 100, infer_rows: int = 10_000,
                      params: Optional[int] = None) -> int:
    """Everything one layer needs on its device (`params`: see state_bytes)."""
    return int((state_bytes(in_features, out_features, optimizer, params)
                + activation_bytes(in_features, out_features, batch_size, infer_rows)) * SLACK)


def layer_node_bytes(in_features: int, out_features: int, optimizer: str, train_rows: int,
                     infer_rows: int, params: int, resend_cache_mib: float,
                     replicas: int = 1) -> int:
    """
    Return what one layer node needs on its device.

    The check its configure makes, and the master's before it moves a layer there
    (`train_rows`: positives and negatives). A replica of a layer copied `replicas` times
    also holds weight snapshots: its own and its peers' of the rounds in flight.
    """
    snapshots = replica_snapshots(replicas) * 4 * params
    return (dense_layer_bytes(in_features, out_features, optimizer, train_rows // 2,
                              infer_rows, params=params)
            + int(resend_cache_mib * 2**20) + snapshots)


def replica_snapshots(replicas: int) -> int:
    """
    Weight copies one replica of `replicas` may hold at once (core/stage/replica_stage.py).

    Two open rounds of its own and of each peer, and the last applied round's own.
    """
    return 0 if replicas <= 1 else 2 * replicas + 1


def check_fits(needed: int, what: str, available: Optional[int] = None) -> None:
    """Raise DoesNotFit with a one-line reason when `needed` exceeds what is available."""
    room = available_bytes() if available is None else available
    if room is not None and needed > room:
        raise DoesNotFit(f'{what} needs about {mib(needed)} (weights, gradients, optimiser '
                         f'state, one batch) but only {mib(room)} is available to this process '
                         '(memory cgroup or machine); spread it over more devices')


def parameter_count(row) -> int:
    """Parameters of a resolved row (a `core.config.LayerSpecConfig`)."""
    return LAYER_TYPES[row.module].parameter_count([row.in_shape], row.args)


def model_bytes(model_cfg) -> int:
    """
    Return what a whole model needs in one process (a `core.config.ModelConfig`).

    Every layer's state, plus the activations of the largest layer (one layer runs at a time).
    """
    training = model_cfg.training
    batch = (training.batch_size if training.mode == 'minibatch'
             else training.train_limit or 60_000)
    rows = training.eval_batch_size * (model_cfg.num_classes if model_cfg.overlays_labels else 1)
    layers = [r for r in model_cfg.layers if r.trainable]
    state = sum(state_bytes(r.in_features, r.out_features, r.hparams.optimizer,
                            parameter_count(r)) for r in layers)
    peak = max((activation_bytes(r.in_features, r.out_features, batch, rows) for r in layers),
               default=0)
    return int((state + peak) * SLACK)
