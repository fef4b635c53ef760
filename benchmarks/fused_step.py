"""Autograd vs closed-form (fused) FFDense training steps, side by side in one run.

Both trainers start from the same weights and train on the same batch; the script reports
seconds per step and checks the weights still agree after the steps.

    .venv/bin/python benchmarks/fused_step.py [--batch 50000] [--threads 1] [--steps 5]

--batch counts positives (as many negatives again); 50000 is the paper's full batch.
Prints a table and writes benchmarks/results/fused_step_<time>.json. The load average is
recorded: other processes on the machine skew results.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import time

from dff_lifecycle.core.ff.layers import FFDense
from dff_lifecycle.core.ff.local_trainer import LocalTrainer
from dff_lifecycle.core.hyperparams import FFHyperParams
import torch

RESULTS_DIR = Path(__file__).resolve().parent / 'results'


class AutogradDense(FFDense):
    """An FFDense the trainer does not recognise as fused, so it steps through autograd."""


def seconds_per_step(trainer: LocalTrainer, x_pos: torch.Tensor, x_neg: torch.Tensor,
                     steps: int) -> float:
    trainer.step(x_pos, x_neg, steps=1)  # warm-up: allocations, thread pool
    start = time.perf_counter()
    trainer.step(x_pos, x_neg, steps=steps)
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--batch', type=int, default=50000)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--steps', type=int, default=5)
    parser.add_argument('--shapes', default='784x500,500x500',
                        help='comma-separated in x out layer sizes')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for shape in args.shapes.split(','):
        n_in, n_out = (int(v) for v in shape.split('x'))
        gen = torch.Generator().manual_seed(0)
        x_pos = torch.rand(args.batch, n_in, generator=gen)
        x_neg = torch.rand(args.batch, n_in, generator=gen)
        fused = LocalTrainer(FFDense(n_in, n_out, generator=gen), FFHyperParams())
        plain_layer = AutogradDense(n_in, n_out)
        plain_layer.load_state_dict(fused.layer.state_dict())
        plain = LocalTrainer(plain_layer, FFHyperParams())
        t_plain = seconds_per_step(plain, x_pos, x_neg, args.steps)
        t_fused = seconds_per_step(fused, x_pos, x_neg, args.steps)
        drift = float((fused.layer.weight - plain.layer.weight).detach().abs().max())
        rows.append({'shape': shape, 'autograd_s': t_plain, 'fused_s': t_fused,
                     'speedup': t_plain / t_fused, 'max_weight_difference': drift})
        print(f'{shape:>9}  autograd {t_plain:.3f} s/step  fused {t_fused:.3f} s/step  '
              f'x{t_plain / t_fused:.2f}  max |dW| after {args.steps + 1} steps {drift:.2e}')
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / f'fused_step_{time.strftime("%Y%m%d_%H%M%S")}.json'
    out.write_text(json.dumps({'args': vars(args), 'loadavg': os.getloadavg(),
                               'torch': torch.__version__, 'rows': rows}, indent=2))
    print(f'wrote {out}')


if __name__ == '__main__':
    main()
