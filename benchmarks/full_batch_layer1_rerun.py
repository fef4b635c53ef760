"""Retrain layer 1 of a finished full-batch run with the current code, reusing its layer 0.

Used to measure the fix that makes layer 1 train on layer 0's final-weight activities
(commit afa6f72) without retraining layer 0, whose training the fix does not change:

    .venv/bin/python benchmarks/full_batch_layer1_rerun.py --seed 0 --run runs/mnist_paper \
        --out /tmp/rerun [--config params/models/mnist_paper.yaml] [--threads 1]

--run is the `--out` folder of a `dff_train` run of the same config and seed. Layer 0's rows
in the new metrics.json are zeros (it is loaded, not trained); layer 1's are real.
"""
import argparse
import os
from pathlib import Path

from dff_lifecycle.core.config import load_layer_config, load_model_config
from dff_lifecycle.core.data.datasets import load_dataset
from dff_lifecycle.core.ff.local_trainer import StepResult
from dff_lifecycle.core.run import experiment
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--seed', type=int, required=True)
    parser.add_argument('--run', type=Path, required=True)
    parser.add_argument('--out', type=Path, required=True)
    parser.add_argument('--config', type=Path, default=REPO / 'params/models/mnist_paper.yaml')
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--data-root', default=os.environ.get('DFF_DATA_ROOT', 'data'))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    raw = yaml.safe_load(args.config.read_text())
    raw['training']['seed'] = args.seed
    cfg = load_model_config(raw, load_layer_config(REPO / 'params/layers.yaml'))
    dataset = load_dataset(cfg.dataset, args.data_root, train_limit=cfg.training.train_limit)
    state = torch.load(next(args.run.glob('weights/*/layer_0.pt')), weights_only=True)
    build = experiment.FFNetwork.from_model_config

    def with_trained_layer_0(model_cfg, device):
        network = build(model_cfg, device)
        trainer = network.trainers[0]
        trainer.load_state_dict(state)
        trainer.step = lambda x_pos, x_neg, steps=1: StepResult(
            0.0, 0.0, 0.0, trainer.infer(x_pos), trainer.infer(x_neg))
        return network

    experiment.FFNetwork.from_model_config = with_trained_layer_0
    experiment.run_single_process(cfg, dataset, 'cpu', args.out, progress=False)


if __name__ == '__main__':
    main()
