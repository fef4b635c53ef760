"""
Training history records and the metrics files of a run, for both kinds of run.

A history record is `{'layer': i, <axis>: at, 'loss', 'goodness_pos', 'goodness_neg'}`,
with axis 'epoch' (minibatch, per-epoch means) or 'step' (full batch).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from dff_lifecycle.core.run.plots import plot_training
import numpy as np

Scalars = Sequence[float]  # loss, goodness of positives, goodness of negatives


def record(layer: int, axis: str, at: int, loss: float, g_pos: float, g_neg: float) -> dict:
    return {'layer': layer, axis: at, 'loss': float(loss), 'goodness_pos': float(g_pos),
            'goodness_neg': float(g_neg)}


def describe(records: Sequence[dict]) -> str:
    """One log line for records of several layers."""
    return ' | '.join(f"layer {r['layer']}: loss {r['loss']:.4f} g+ {r['goodness_pos']:.3f} "
                      f"g- {r['goodness_neg']:.3f}" for r in records)


def epoch_means(samples: Mapping[int, Iterable[tuple[int, Scalars]]]) -> list[dict]:
    """{layer: [(epoch, scalars), ...]} -> per-layer, per-epoch mean records (epoch from 1)."""
    history = []
    for layer, items in sorted(samples.items()):
        by_epoch: dict[int, list] = {}
        for epoch, values in items:
            by_epoch.setdefault(epoch, []).append(values)
        for epoch, values in sorted(by_epoch.items()):
            mean = np.mean(np.asarray(values, dtype=np.float64), axis=0)
            history.append(record(layer, 'epoch', epoch + 1, *mean))
    return history


def write_metrics(metrics: dict, out_dir: Path) -> None:
    """metrics.json, and training.png when there is a history, under out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / 'metrics.json').write_text(json.dumps(metrics, indent=2) + '\n', encoding='utf-8')
    if metrics.get('history'):
        plot_training(metrics, out_dir / 'training.png')


def write_curve(points: Sequence[dict], out_dir: Path) -> Path:
    """curve.json under out_dir, replaced whole (a reader never sees half a file)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / 'curve.json'
    partial = path.with_name(path.name + '.partial')
    partial.write_text(json.dumps(list(points), indent=2) + '\n', encoding='utf-8')
    partial.replace(path)
    return path
