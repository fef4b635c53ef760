"""
Evaluation speed: one forward pass per image (class_groups) against one per label candidate.

    python benchmarks/eval_speed.py [--dataset mnist|cifar10] [--images 2000] [--runs 5]

The same layer widths are evaluated twice through core.evaluation.supervised_scores, the
path dff_train and the master take: once as a pos_neg model (the label overlaid on the
image, every image tried under each of the 10 labels) and once as a class_groups model
(each image once, its class scores from the layers' channel groups). Weights are random:
speed does not depend on them. Medians over --runs, images/s, and the ratio; writes
benchmarks/results/eval_speed_<dataset>_<stamp>.json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

from dff_lifecycle.core.config import load_layer_config, load_model_config
from dff_lifecycle.core.ff.network import FFNetwork
from dff_lifecycle.core.run.evaluation import supervised_scores
from portable import REPO
import torch

RESULTS = REPO / 'benchmarks' / 'results'
MODELS = {  # dense widths the MNIST fast recipe uses; CIFAR-10: the class-group conv recipe
    'mnist': ([784], [[-1, 'FFDense', [500]], [-1, 'FFDense', [500]]]),
    'cifar10': ([3, 32, 32], [[-1, 'FFConv2d', [60, 3, 1, 1]], [-1, 'MaxPool2d', [2]],
                              [-1, 'FFConv2d', [120, 3, 1, 1]], [-1, 'MaxPool2d', [2]],
                              [-1, 'FFConv2d', [240, 3, 1, 1]], [-1, 'MaxPool2d', [2]],
                              [-1, 'FFDense', [500]]]),
}


def model(dataset: str, objective: str):
    shape, layers = MODELS[dataset]
    return load_model_config({'name': f'speed_{objective}', 'dataset': dataset,
                              'supervised': True, 'input_shape': shape,
                              'layer_defaults': {'objective': objective},
                              'training': {'eval_batch_size': 500},
                              'layers': layers},
                             load_layer_config(REPO / 'params' / 'layers.yaml'))


def images_per_second(cfg, x: torch.Tensor, runs: int) -> list[float]:
    network = FFNetwork.from_model_config(cfg)
    supervised_scores(network.activities, x[:500], cfg)  # warm-up
    rates = []
    for _ in range(runs):
        started = time.perf_counter()
        supervised_scores(network.activities, x, cfg)
        rates.append(len(x) / (time.perf_counter() - started))
    return rates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--dataset', choices=sorted(MODELS), default='mnist')
    parser.add_argument('--images', type=int, default=2000)
    parser.add_argument('--runs', type=int, default=5)
    args = parser.parse_args(argv)
    if args.images < 1 or args.runs < 1:
        parser.error('--images and --runs must be at least 1')
    torch.manual_seed(0)
    shape, _ = MODELS[args.dataset]
    x = torch.randn(args.images, *shape).flatten(1)
    report = {'dataset': args.dataset, 'images': args.images, 'runs': args.runs,
              'torch_threads': torch.get_num_threads(), 'cpus': os.cpu_count()}
    # pos_neg on a conv reading the image is refused (it cannot learn): CIFAR-10 has no pair.
    objectives = ['class_groups'] + (['pos_neg'] if args.dataset == 'mnist' else [])
    for objective in objectives:
        rates = images_per_second(model(args.dataset, objective), x, args.runs)
        report[objective] = {'images_per_s_median': statistics.median(rates), 'runs': rates}
        print(f'{objective:>12}: {statistics.median(rates):,.0f} images/s '
              f'(median of {args.runs})', flush=True)
    if 'pos_neg' in report:
        ratio = report['class_groups']['images_per_s_median'] / report['pos_neg'][
            'images_per_s_median']
        report['speedup_one_pass'] = ratio
        print(f'one pass per image is {ratio:.1f}x faster than one per label candidate')
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f'eval_speed_{args.dataset}_{time.strftime("%Y%m%d_%H%M%S")}.json'
    path.write_text(json.dumps(report, indent=2) + '\n', encoding='utf-8')
    print(f'wrote {path.relative_to(REPO)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
