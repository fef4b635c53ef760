r"""Random vs hard negatives on one supervised model config, side by side in one run.

Trains the config twice in this process with the same seeds, once with uniformly random wrong
labels and once with hard negatives (training.negatives: hard), and reports test accuracy after
every epoch of each, so the two learning curves can be compared at equal epochs and equal time:

    .venv/bin/python benchmarks/hard_negatives.py params/models/mnist_ff.yaml --epochs 10
    .venv/bin/python benchmarks/hard_negatives.py params/models/mnist_ff.yaml --epochs 2 \
        --train-limit 2000 --test-limit 500          # a quick smoke run

Results go to benchmarks/results/hard_negatives_<model>_<time>.json.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
import time

from dff_lifecycle.core.config import load_layer_config, load_model_config, ModelConfig
from dff_lifecycle.core.data.datasets import Dataset, load_dataset
from dff_lifecycle.core.ff.network import FFNetwork
from dff_lifecycle.core.run.evaluation import evaluate_supervised, supervised_scores
from dff_lifecycle.core.stage.batches import training_epochs
import torch

REPO = Path(__file__).resolve().parents[1]


def learning_curve(model_cfg: ModelConfig, dataset: Dataset) -> list[dict]:
    """Test accuracy and cumulative training seconds (scoring included) after each epoch."""
    network = FFNetwork.from_model_config(model_cfg)
    generator = torch.Generator().manual_seed(model_cfg.training.seed)
    x_test, y_test = dataset.x_test, dataset.y_test
    curve, seconds = [], 0.0
    epochs = training_epochs(dataset, model_cfg, generator,
                             lambda x: supervised_scores(network.activities, x, model_cfg))
    while True:
        started = time.perf_counter()
        batches = next(epochs, None)  # opening an epoch may score the training set
        if batches is None:
            return curve
        for batch in batches:
            network.train_batch(batch.x_pos, batch.x_neg)
        seconds += time.perf_counter() - started
        accuracy = evaluate_supervised(network.activities, x_test, y_test, model_cfg)
        curve.append({'epoch': len(curve) + 1, 'train_seconds': seconds,
                      'test_accuracy': accuracy})
        print(f'  {model_cfg.training.negatives:6s} epoch {len(curve):3d}: '
              f'test {accuracy:.4f} after {seconds:.0f} s', flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', type=Path)
    parser.add_argument('--epochs', type=int, default=10)
    parser.add_argument('--train-limit', type=int, default=None)
    parser.add_argument('--test-limit', type=int, default=None)
    parser.add_argument('--data-root', default=None)
    parser.add_argument('--threads', type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    base = load_model_config(args.config, load_layer_config(REPO / 'params' / 'layers.yaml'))
    if not base.supervised:
        raise SystemExit(f'{args.config}: hard negatives need a supervised model')
    dataset = load_dataset(base.dataset, args.data_root, train_limit=args.train_limit,
                           test_limit=args.test_limit)
    results = {}
    for negatives in ('random', 'hard'):
        training = dataclasses.replace(base.training, negatives=negatives, epochs=args.epochs,
                                       train_limit=args.train_limit, test_limit=args.test_limit)
        results[negatives] = learning_curve(dataclasses.replace(base, training=training), dataset)
    print(f'{"epoch":>5} {"random":>8} {"hard":>8}')
    for plain, hard in zip(results['random'], results['hard']):
        print(f'{plain["epoch"]:5d} {plain["test_accuracy"]:8.4f} {hard["test_accuracy"]:8.4f}')
    out = REPO / 'benchmarks' / 'results' / (
        f'hard_negatives_{base.name}_{time.strftime("%Y%m%d_%H%M%S")}.json')
    out.write_text(json.dumps({'config': str(args.config), 'epochs': args.epochs,
                               'train_limit': args.train_limit, 'test_limit': args.test_limit,
                               'torch_threads': torch.get_num_threads(), **results},
                              indent=2) + '\n')
    print(f'saved {out.relative_to(REPO)}')


if __name__ == '__main__':
    main()
