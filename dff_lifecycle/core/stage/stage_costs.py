"""
Each stage's training step cost, measured: what balanced placement divides.

A few training batches of the config's batch size on random inputs of the model's
shape, through the model's own stages in this process; each stage's median wall time
per batch. Weights and data do not change the cost of a step, only shapes do. The
master measures on its own CPU and takes the devices as alike; costs measured on a
device (`benchmarks/stage_costs.py`, or a saved calibration) can be given instead.
"""
from __future__ import annotations

import statistics

from dff_lifecycle.core.config import ModelConfig
from dff_lifecycle.core.ff.negatives import overlay_labels
from dff_lifecycle.core.ff.network import FFNetwork
import torch

WARM_UP = 1  # the first batch pays for allocations and lazy initialisation


def measure_stage_costs(model_cfg: ModelConfig, batches: int = 3,
                        device: torch.device | str = 'cpu') -> list[float]:
    """Return each stage's median seconds per training batch (in `model_cfg.stages` order)."""
    if batches < 1:
        raise ValueError(f'batches must be >= 1, got {batches}')
    network = FFNetwork.from_model_config(model_cfg, device)
    n = model_cfg.training.batch_size
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, *model_cfg.input_shape, generator=generator).to(device)
    y = torch.randint(model_cfg.num_classes, (n,), generator=generator).to(device)
    runs: list[list[float]] = []
    for _ in range(WARM_UP + batches):
        seconds: list[float] = []
        if model_cfg.class_groups:
            network.train_batch_classes(x, y, seconds=seconds)
        elif model_cfg.overlays_labels:
            network.train_batch(overlay_labels(x, y, model_cfg.num_classes),
                                overlay_labels(x, (y + 1) % model_cfg.num_classes,
                                               model_cfg.num_classes), seconds=seconds)
        else:
            network.train_batch(x, x.flip(0), seconds=seconds)
        runs.append(seconds)
    return [statistics.median(run[i] for run in runs[WARM_UP:])
            for i in range(len(network.stages))]
