"""Single-process training run: every layer here, trained batch by batch or full batch."""
from __future__ import annotations

from pathlib import Path
import time
from typing import Callable, Iterable, Optional

from dff_lifecycle.core.config import ModelConfig
from dff_lifecycle.core.data.datasets import Dataset
from dff_lifecycle.core.data.input_stats import InputStats, save_input_stats, stats_of
from dff_lifecycle.core.ff.local_trainer import StepResult
from dff_lifecycle.core.ff.network import FFNetwork
from dff_lifecycle.core.objectives.separation import describe_silent, inseparable_layers
from dff_lifecycle.core.run.evaluation import (evaluate, features_from_activities,
                                               scores_from_activities, supervised_scores)
from dff_lifecycle.core.run.learning_curve import LearningCurve
from dff_lifecycle.core.run.metrics import describe, record, write_metrics
from dff_lifecycle.core.run.weights import layer_weight_path, save_state_atomic
from dff_lifecycle.core.stage.batches import count_batches, TrainBatch, training_batches
import torch
from torch import Tensor
from tqdm import tqdm

FULL_BATCH_LOG_EVERY = 50      # full-batch mode records the losses every this many steps
Log = Callable[[str], None]


# --------------------------------------------------------------------------- training

def _train_minibatches(network: FFNetwork, batches: Iterable[TrainBatch], model_cfg: ModelConfig,
                       bar: tqdm, log: Log, curve: Optional[LearningCurve] = None
                       ) -> list[dict]:
    """Every layer trains on every batch; history holds per-epoch means of each layer's scalars."""
    started = time.perf_counter()
    history: list[dict] = []
    indices = [stage.index for stage in network.stages]  # records name layers by row index
    sums = torch.zeros(len(indices), 3, dtype=torch.float64)
    count, epoch = 0, 0
    silent: list[Optional[frozenset[int]]] = [None] * len(indices)  # silent all epoch long

    def close_epoch() -> None:
        means = (sums / max(count, 1)).numpy()
        records = [record(index, 'epoch', epoch + 1, *map(float, means[i]))
                   for i, index in enumerate(indices)]
        history.extend(records)
        with tqdm.external_write_mode():
            log(f'epoch {epoch + 1}/{model_cfg.training.epochs}: {describe(records)}')
            for warning in inseparable_layers(records):
                log(f'WARNING: {warning}')
            for index, groups in zip(indices, silent):
                if groups:
                    log(f'WARNING: layer {index}: '
                        + describe_silent(groups, f'through epoch {epoch + 1}'))
            if curve is not None:
                curve.after_epoch(epoch + 1, time.perf_counter() - started)

    for batch in batches:
        if batch.epoch != epoch:
            close_epoch()
            sums.zero_()
            count, epoch = 0, batch.epoch
            silent = [None] * len(indices)
        results: list[StepResult] = (network.train_batch_classes(batch.images, batch.y_pos)
                                     if batch.classed
                                     else network.train_batch(batch.x_pos, batch.x_neg))
        sums += torch.tensor([[r.loss, r.goodness_pos, r.goodness_neg] for r in results],
                             dtype=torch.float64)
        silent = [frozenset(r.silent_groups) if before is None
                  else before & frozenset(r.silent_groups)
                  for before, r in zip(silent, results)]
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
    outputs: dict[int, tuple[Tensor, Tensor]] = {}
    for position, stage in enumerate(network.stages):
        sources = network.stage_inputs(position, outputs, (batch.x_pos, batch.x_neg))
        inputs_pos, inputs_neg = [pos for pos, _ in sources], [neg for _, neg in sources]
        done = 0
        while done < steps:
            chunk = min(FULL_BATCH_LOG_EVERY, steps - done)
            result, out_pos, out_neg = network.train_stage(position, inputs_pos, inputs_neg,
                                                           chunk)
            done += chunk
            history.append(record(stage.index, 'step', done, result.loss, result.goodness_pos,
                                  result.goodness_neg))
            bar.update(chunk)
            bar.set_postfix(layer=stage.index, loss=f'{result.loss:.3f}', refresh=False)
        with tqdm.external_write_mode():
            log(f'layer {stage.index} done after {steps} steps: {describe(history[-1:])}')
        # The next layer trains on this layer's output of the same batch, as in a distributed run.
        outputs[stage.index] = (out_pos, out_neg)
    return history


def save_layer_weights(network: FFNetwork, model_cfg: ModelConfig, weight_dir: Path) -> list[Path]:
    """One file per layer (weights, optimizer state, counters) in the layer nodes' layout."""
    paths = []
    for stage, trainer in zip(network.stages, network.trainers):
        path = layer_weight_path(weight_dir, model_cfg.name, stage.index)
        save_state_atomic(path, trainer.state_dict())
        paths.append(path)
    return paths


def run_single_process(model_cfg: ModelConfig, dataset: Dataset, device: torch.device | str,
                       out_dir: str | Path | None = None, progress: bool = True,
                       log: Log = print) -> dict:
    """Train all layers here and evaluate; with out_dir also write metrics, plot and weights."""
    device = torch.device(device)
    model_cfg = model_cfg.with_schedule_horizon(count_batches(dataset, model_cfg))
    network = FFNetwork.from_model_config(model_cfg, device)
    generator = torch.Generator().manual_seed(model_cfg.training.seed)
    full_batch = model_cfg.training.mode == 'full_batch'
    total = (model_cfg.training.steps_per_layer * len(model_cfg.stages) if full_batch
             else count_batches(dataset, model_cfg))
    started = time.perf_counter()
    with tqdm(total=total, unit='step' if full_batch else 'batch', disable=not progress,
              desc=f'train {model_cfg.name}') as bar:
        batches = training_batches(dataset, model_cfg, generator,
                                   lambda x: supervised_scores(network.activities, x, model_cfg))
        curve = LearningCurve(model_cfg, dataset,
                              scores_from_activities(network.activities, model_cfg),
                              None if out_dir is None else Path(out_dir), log)
        if full_batch:
            history = _train_full_batch(network, next(iter(batches)), model_cfg, bar, log)
        else:
            history = _train_minibatches(network, batches, model_cfg, bar, log, curve)
    train_seconds = time.perf_counter() - started - curve.spent_s

    started = time.perf_counter()
    evaluation = evaluate(model_cfg, dataset,
                          label_scores_fn=scores_from_activities(network.activities, model_cfg),
                          features_fn=features_from_activities(network.activities, model_cfg),
                          device=device)
    eval_seconds = time.perf_counter() - started
    log(f'{model_cfg.name}: test accuracy {evaluation.test_accuracy:.4f}, '
        f'{evaluation.train_text()} ({evaluation.train_accuracy_samples} samples); '
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
        'batches_done': total,
        'eval_seconds': eval_seconds,
        'test_accuracy': evaluation.test_accuracy,
        'train_accuracy': evaluation.train_accuracy,
        'train_accuracy_samples': evaluation.train_accuracy_samples,
        'config': model_cfg.to_dict(),
    }
    if curve.points:
        metrics['curve'] = curve.points
    if out_dir is not None:
        write_outputs(metrics, network, model_cfg, Path(out_dir), stats_of(dataset))
    return metrics


def write_outputs(metrics: dict, network: FFNetwork, model_cfg: ModelConfig,
                  out_dir: Path, stats: InputStats) -> None:
    """
    metrics.json, training.png and weights/<model>/ under out_dir.

    The weights folder holds layer_<i>.pt and input_stats.json, all a serving node needs.
    """
    write_metrics(metrics, out_dir)
    paths = save_layer_weights(network, model_cfg, out_dir / 'weights')
    save_input_stats(paths[0].parent, stats)
