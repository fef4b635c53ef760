"""
dff_train: train a Forward-Forward model in one process (no ROS): baselines and recipe tuning.

Usage:

    dff_train --config params/models/mnist_ff.yaml [--data-root DIR] [--out runs/NAME]
              [--device auto|cpu|cuda] [--epochs N] [--steps N] [--seed N] [--threads N]
              [--download] [--no-progress]
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
import sys
from typing import Sequence

from dff_lifecycle.cli.arguments import non_negative_int, positive_int
from dff_lifecycle.common.cpu_limit import torch_threads
from dff_lifecycle.common.folders import writable_folder
from dff_lifecycle.common.package_files import resolve_config_path
from dff_lifecycle.core.config import (ConfigError, load_layer_config, load_model_config,
                                       ModelConfig)
from dff_lifecycle.core.data.datasets import DATA_ROOT_ENV, DataNotFoundError, load_model_data
from dff_lifecycle.core.data.download import MIRROR_ENV
from dff_lifecycle.core.ff.memory import check_fits, DoesNotFit, model_bytes
from dff_lifecycle.core.run.experiment import run_single_process
import torch

PROG = 'dff_train'


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG,
                                     description='Train a Forward-Forward model in one process.')
    parser.add_argument('--config', required=True, type=Path,
                        help='model config (params/models/*.yaml)')
    parser.add_argument('--layers', type=Path, default=None,
                        help='layer config (default: layers.yaml above the model config folder, '
                             "else the package's params/layers.yaml)")
    parser.add_argument('--data-root', type=Path, default=None,
                        help=f'dataset folder (default: ${DATA_ROOT_ENV}, else ./data)')
    parser.add_argument('--download', action='store_true',
                        help='fetch the dataset with torchvision if the data root lacks it '
                             f'(from ${MIRROR_ENV} if set), md5-verified')
    parser.add_argument('--out', type=Path, default=None,
                        help='output folder (default: runs/<model name>)')
    parser.add_argument('--device', choices=('auto', 'cpu', 'cuda'), default='auto')
    parser.add_argument('--epochs', type=positive_int, default=None,
                        help='override training.epochs')
    parser.add_argument('--steps', type=positive_int, default=None,
                        help='override training.steps_per_layer (full_batch mode)')
    parser.add_argument('--seed', type=non_negative_int, default=None,
                        help='override training.seed (data order, negatives, layer init)')
    parser.add_argument('--threads', type=positive_int, default=None,
                        help='CPU threads for torch (default: the cores this process may use, '
                             'its CPU affinity and cgroup CPU quota; 1 is faster when other '
                             'jobs share the cores)')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    return parser


def resolve_device(choice: str) -> torch.device:
    if choice == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    if choice == 'cuda' and not torch.cuda.is_available():
        raise ValueError('--device cuda was requested but CUDA is not available')
    return torch.device(choice)


def load_config(args: argparse.Namespace) -> ModelConfig:
    """Return the model config with command-line overrides applied."""
    # params/models/x.yaml -> params/layers.yaml, in the repo and in the installed share/ folder.
    # A model config elsewhere (a copy in your own folder) gets the package's layer config.
    layers_path = args.layers or args.config.parent.parent / 'layers.yaml'
    if args.layers is None and not layers_path.is_file():
        layers_path = Path(resolve_config_path('params/layers.yaml'))
    layer_types = load_layer_config(layers_path)
    model_cfg = load_model_config(args.config, layer_types)
    if args.seed is not None:  # layer seeds derive from it, so the layers are resolved again
        data = model_cfg.to_dict()
        data['training']['seed'] = args.seed
        model_cfg = dataclasses.replace(load_model_config(data, layer_types),
                                        source=model_cfg.source)
    overrides = {}
    if args.epochs is not None:
        overrides['epochs'] = args.epochs
    if args.steps is not None:
        overrides['steps_per_layer'] = args.steps
    if not overrides:
        return model_cfg
    return dataclasses.replace(model_cfg,
                               training=dataclasses.replace(model_cfg.training, **overrides))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(torch_threads(args.threads or 0))
    try:
        model_cfg = load_config(args)
        device = resolve_device(args.device)
        # Before the data and the layers take memory: a model that cannot fit says so,
        # instead of being OOM-killed without a word.
        check_fits(model_bytes(model_cfg), f'model {model_cfg.name!r} in one process')
        out_dir = args.out or Path('runs') / model_cfg.name
        writable_folder(out_dir, f'--out {out_dir}')  # before hours of training, not after
        dataset = load_model_data(model_cfg, args.data_root, download=args.download,
                                  progress=not args.no_progress)
    except (ConfigError, DataNotFoundError, ValueError, DoesNotFit) as err:
        print(f'{PROG}: error: {err}', file=sys.stderr)
        return 2
    print(f'{PROG}: {model_cfg.name} on {device} ({torch.get_num_threads()} threads), '
          f'{len(dataset.x_train)} train / {len(dataset.x_test)} test samples -> {out_dir}')
    metrics = run_single_process(model_cfg, dataset, device, out_dir,
                                 progress=not args.no_progress)
    print(f"test accuracy: {metrics['test_accuracy']:.4f} "
          f"(train {metrics['train_seconds']:.0f} s)")
    return 0


if __name__ == '__main__':
    sys.exit(main())
