"""Measured cost of each layer's training step, in this process (run it on a device).

    .venv/bin/python benchmarks/stage_costs.py benchmarks/configs/scaling_4x2000.yaml

Prints one JSON line: {"seconds_per_batch": [layer 0, layer 1, ...]}: the wall time of
`--batches` steps in a row, per step, on random inputs of the layer's width and the config's
batch size. Wall time over a run (not a median of single steps) includes a CPU quota's
throttling, which is what a device's stage really costs.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
import time

from dff_lifecycle.core.config import load_layer_config, load_model_config
from dff_lifecycle.core.ff.layers import build_layer
from dff_lifecycle.core.ff.local_trainer import LocalTrainer
import torch

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', type=Path)
    parser.add_argument('--batches', type=int, default=20)
    args = parser.parse_args()
    model = load_model_config(args.config, load_layer_config(REPO / 'params' / 'layers.yaml'))
    n = model.training.batch_size
    costs = []
    for row in model.layers:
        layer, _ = build_layer(row.module, row.in_features, [row.out_features], row.seed)
        trainer = LocalTrainer(layer, row.hparams)
        x_pos, x_neg = torch.rand(n, row.in_features), torch.rand(n, row.in_features)
        trainer.step(x_pos, x_neg)  # warm-up
        started = time.perf_counter()
        for _ in range(args.batches):
            trainer.step(x_pos, x_neg)
        costs.append((time.perf_counter() - started) / args.batches)
    print(json.dumps({'seconds_per_batch': costs, 'threads': torch.get_num_threads()}))


if __name__ == '__main__':
    main()
