"""Single-process training run and the evaluation code it shares with the distributed master."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch
from torch import Tensor
from tqdm import tqdm

from dff_lifecycle.core.batches import (TrainBatch, count_batches, inference_inputs,
                                        training_batches)
from dff_lifecycle.core.config import ModelConfig
from dff_lifecycle.core.data import Dataset
from dff_lifecycle.core.head import head_predict, train_head
from dff_lifecycle.core.local_trainer import StepResult
from dff_lifecycle.core.network import FFNetwork
from dff_lifecycle.core.plots import plot_training
from dff_lifecycle.core.scoring import (accuracy, label_scores, layer_goodness,
                                        normalised_features, predict_labels)
from dff_lifecycle.core.weights import layer_weight_path, save_state_atomic

ActivityFn = Callable[[Tensor], Sequence[Tensor]]  # input batch -> every layer's activities
Log = Callable[[str], None]

FULL_BATCH_LOG_EVERY = 50      # full-batch mode records the losses every this many steps
TRAIN_ACCURACY_SAMPLES = 10_000  # train accuracy is measured on at most this many samples


@dataclass(frozen=True)
class Evaluation:
    test_accuracy: float
    train_accuracy: float
    train_accuracy_samples: int


# --------------------------------------------------------------------------- evaluation (shared)

def supervised_scores(activity_fn: ActivityFn, x: Tensor, model_cfg: ModelConfig) -> Tensor:
    """(N, C) goodness of each label's overlay, summed over model_cfg.goodness_layers."""
    reductions = [model_cfg.layers[i].hparams.goodness for i in model_cfg.goodness_layers]
    batch_size = model_cfg.training.eval_batch_size
    scores = []
    for start in range(0, len(x), batch_size):
        activities = activity_fn(inference_inputs(x[start:start + batch_size], model_cfg))
        chosen = [activities[i] for i in model_cfg.goodness_layers]
        scores.append(label_scores(layer_goodness(chosen, reductions), model_cfg.num_classes).cpu())
    return torch.cat(scores)


def predict_supervised(activity_fn: ActivityFn, x: Tensor, model_cfg: ModelConfig) -> Tensor:
    """(N,) labels whose overlay gives the most goodness."""
    return predict_labels(supervised_scores(activity_fn, x, model_cfg))


def evaluate_supervised(activity_fn: ActivityFn, x: Tensor, y: Tensor,
                        model_cfg: ModelConfig) -> float:
    """Accuracy of goodness-based label prediction."""
    return accuracy(predict_supervised(activity_fn, x, model_cfg), y)


def head_features(activity_fn: ActivityFn, x: Tensor, model_cfg: ModelConfig) -> Tensor:
    """(N, F) per-layer L2-normalised activities of model_cfg.feature_layers, on the CPU."""
    batch_size = model_cfg.training.eval_batch_size
    features = []
    for start in range(0, len(x), batch_size):
        activities = activity_fn(inference_inputs(x[start:start + batch_size], model_cfg))
        chosen = [activities[i] for i in model_cfg.feature_layers]
        features.append(normalised_features(chosen).cpu())
    return torch.cat(features)


def evaluate_unsupervised(activity_fn: ActivityFn, dataset: Dataset, model_cfg: ModelConfig,
                          device: torch.device | str) -> Evaluation:
    """Train the head on features of the training set, then measure it on the test set."""
    if model_cfg.head is None:
        raise ValueError(f'{model_cfg.name}: unsupervised evaluation needs a head config')
    train_limit, test_limit = model_cfg.training.train_limit, model_cfg.training.test_limit
    train_features = head_features(activity_fn, dataset.x_train[:train_limit], model_cfg)
    y_train = dataset.y_train[:train_limit]
    # Own generator, seeded from the config, so the head does not depend on how training went.
    generator = torch.Generator().manual_seed(model_cfg.training.seed)
    head = train_head(train_features, y_train, model_cfg.num_classes, model_cfg.head, generator,
                      device)
    test_features = head_features(activity_fn, dataset.x_test[:test_limit], model_cfg)
    n_train = min(len(y_train), TRAIN_ACCURACY_SAMPLES)

    def head_accuracy(features: Tensor, labels: Tensor) -> float:
        return accuracy(head_predict(head, features, model_cfg.head.batch_size), labels)

    return Evaluation(test_accuracy=head_accuracy(test_features, dataset.y_test[:test_limit]),
                      train_accuracy=head_accuracy(train_features[:n_train], y_train[:n_train]),
                      train_accuracy_samples=n_train)


def evaluate(activity_fn: ActivityFn, dataset: Dataset, model_cfg: ModelConfig,
             device: torch.device | str) -> Evaluation:
    """Test accuracy, and train accuracy on up to TRAIN_ACCURACY_SAMPLES, for either model kind."""
    if not model_cfg.supervised:
        return evaluate_unsupervised(activity_fn, dataset, model_cfg, device)
    training = model_cfg.training
    n_train = min(len(dataset.x_train[:training.train_limit]), TRAIN_ACCURACY_SAMPLES)
    return Evaluation(
        test_accuracy=evaluate_supervised(activity_fn, dataset.x_test[:training.test_limit],
                                          dataset.y_test[:training.test_limit], model_cfg),
        train_accuracy=evaluate_supervised(activity_fn, dataset.x_train[:n_train],
                                           dataset.y_train[:n_train], model_cfg),
        train_accuracy_samples=n_train)


# --------------------------------------------------------------------------- training

def _record(layer: int, axis: str, at: int, loss: float, g_pos: float, g_neg: float) -> dict:
    return {'layer': layer, axis: at, 'loss': loss, 'goodness_pos': g_pos, 'goodness_neg': g_neg}


def _describe(records: Sequence[dict]) -> str:
    return ' | '.join(f"layer {r['layer']}: loss {r['loss']:.4f} g+ {r['goodness_pos']:.3f} "
                      f"g- {r['goodness_neg']:.3f}" for r in records)


def _train_minibatches(network: FFNetwork, batches: Iterable[TrainBatch], model_cfg: ModelConfig,
                       bar: tqdm, log: Log) -> list[dict]:
    """Every layer trains on every batch; history holds per-epoch means of each layer's scalars."""
    history: list[dict] = []
    num_layers = len(model_cfg.layers)
    sums = torch.zeros(num_layers, 3, dtype=torch.float64)
    count, epoch = 0, 0

    def close_epoch() -> None:
        means = (sums / max(count, 1)).numpy()
        records = [_record(i, 'epoch', epoch + 1, *map(float, means[i]))
                   for i in range(num_layers)]
        history.extend(records)
        with tqdm.external_write_mode():
            log(f'epoch {epoch + 1}/{model_cfg.training.epochs}: {_describe(records)}')

    for batch in batches:
        if batch.epoch != epoch:
            close_epoch()
            sums.zero_()
            count, epoch = 0, batch.epoch
        results: list[StepResult] = network.train_batch(batch.x_pos, batch.x_neg)
        sums += torch.tensor([[r.loss, r.goodness_pos, r.goodness_neg] for r in results],
                             dtype=torch.float64)
        count += 1
        bar.update(1)
        bar.set_postfix(epoch=epoch + 1, loss=f'{results[-1].loss:.3f}', refresh=False)
    if count:
        close_epoch()
    return history


def _train_full_batch(network: FFNetwork, batch: TrainBatch, model_cfg: ModelConfig,
                      bar: tqdm, log: Log) -> list[dict]:
    """Layer after layer, steps_per_layer steps each on the one batch (the paper's recipe)."""
    history: list[dict] = []
    steps = model_cfg.training.steps_per_layer
    outputs: list[tuple[Tensor, Tensor]] = []
    for spec, trainer in zip(model_cfg.layers, network.trainers):
        x_pos, x_neg = ((batch.x_pos, batch.x_neg) if spec.source_index < 0
                        else outputs[spec.source_index])
        done = 0
        while done < steps:
            chunk = min(FULL_BATCH_LOG_EVERY, steps - done)
            result = trainer.step(x_pos, x_neg, chunk)
            done += chunk
            history.append(_record(spec.index, 'step', done, result.loss, result.goodness_pos,
                                   result.goodness_neg))
            bar.update(chunk)
            bar.set_postfix(layer=spec.index, loss=f'{result.loss:.3f}', refresh=False)
        with tqdm.external_write_mode():
            log(f'layer {spec.index} done after {steps} steps: {_describe(history[-1:])}')
        # The next layer trains on this layer's output of the same batch, as in a distributed run.
        outputs.append((result.h_pos, result.h_neg))
    return history


def save_layer_weights(network: FFNetwork, model_cfg: ModelConfig, weight_dir: Path) -> list[Path]:
    """One file per layer (weights, optimizer state, counters) in the layer nodes' layout."""
    paths = []
    for index, trainer in enumerate(network.trainers):
        path = layer_weight_path(weight_dir, model_cfg.name, index)
        save_state_atomic(path, trainer.state_dict())
        paths.append(path)
    return paths


def run_single_process(model_cfg: ModelConfig, dataset: Dataset, device: torch.device | str,
                       out_dir: str | Path | None = None, progress: bool = True,
                       log: Log = print) -> dict:
    """Train all layers here and evaluate; with out_dir also write metrics, plot and weights."""
    device = torch.device(device)
    network = FFNetwork.from_model_config(model_cfg, device)
    generator = torch.Generator().manual_seed(model_cfg.training.seed)
    full_batch = model_cfg.training.mode == 'full_batch'
    total = (model_cfg.training.steps_per_layer * len(model_cfg.layers) if full_batch
             else count_batches(dataset, model_cfg))
    started = time.perf_counter()
    with tqdm(total=total, unit='step' if full_batch else 'batch', disable=not progress,
              desc=f'train {model_cfg.name}') as bar:
        batches = training_batches(dataset, model_cfg, generator,
                                   lambda x: supervised_scores(network.activities, x, model_cfg))
        if full_batch:
            history = _train_full_batch(network, next(iter(batches)), model_cfg, bar, log)
        else:
            history = _train_minibatches(network, batches, model_cfg, bar, log)
    train_seconds = time.perf_counter() - started

    started = time.perf_counter()
    evaluation = evaluate(network.activities, dataset, model_cfg, device)
    eval_seconds = time.perf_counter() - started
    log(f'{model_cfg.name}: test accuracy {evaluation.test_accuracy:.4f}, train accuracy '
        f'{evaluation.train_accuracy:.4f} ({evaluation.train_accuracy_samples} samples); '
        f'train {train_seconds:.1f} s, eval {eval_seconds:.1f} s')

    metrics = {
        'model': model_cfg.name,
        'dataset': model_cfg.dataset,
        'mode': model_cfg.training.mode,
        'device': str(device),
        'torch_threads': torch.get_num_threads(),
        'train_samples': len(dataset.x_train[:model_cfg.training.train_limit]),
        'test_samples': len(dataset.x_test[:model_cfg.training.test_limit]),
        'history_axis': 'step' if full_batch else 'epoch',
        'history': history,
        'train_seconds': train_seconds,
        'eval_seconds': eval_seconds,
        'test_accuracy': evaluation.test_accuracy,
        'train_accuracy': evaluation.train_accuracy,
        'train_accuracy_samples': evaluation.train_accuracy_samples,
        'config': model_cfg.to_dict(),
    }
    if out_dir is not None:
        write_outputs(metrics, network, model_cfg, Path(out_dir))
    return metrics


def write_outputs(metrics: dict, network: FFNetwork, model_cfg: ModelConfig,
                  out_dir: Path) -> None:
    """metrics.json, training.png and weights/<model>/layer_<i>.pt under out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / 'metrics.json').write_text(json.dumps(metrics, indent=2) + '\n', encoding='utf-8')
    plot_training(metrics, out_dir / 'training.png')
    save_layer_weights(network, model_cfg, out_dir / 'weights')
