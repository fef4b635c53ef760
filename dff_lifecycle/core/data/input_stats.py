"""
How a model's input images were standardised, kept beside its weights for serving.

Training standardises every channel with the training set's mean and spread (MNIST's
fixed constants, CIFAR-10's and an image folder's measured ones). A node that serves
the model on a camera topic must do the same to raw pixels, and may run where the
dataset is not: so `dff_train` and the master write `input_stats.json` next to the
layer files (`<weights>/<model>/`), with the class names in label order.
"""
from __future__ import annotations

from dataclasses import dataclass
import json
import math
from pathlib import Path
from typing import Any

FILE_NAME = 'input_stats.json'


class InputStatsError(ValueError):
    """An input statistics file is missing, unreadable or malformed; the message names it."""


@dataclass(frozen=True)
class InputStats:
    """Per-channel mean and std of pixels in [0, 1], and the class names in label order."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.mean or len(self.mean) != len(self.std):
            raise InputStatsError(f'mean and std need one value per channel, got '
                                  f'{len(self.mean)} and {len(self.std)}')
        if not all(math.isfinite(v) for v in self.mean + self.std) or min(self.std) <= 0:
            raise InputStatsError('mean must be finite and std finite and > 0')

    def to_dict(self) -> dict[str, Any]:
        return {'mean': list(self.mean), 'std': list(self.std),
                'class_names': list(self.class_names)}


def stats_of(dataset: Any) -> InputStats:
    """Return the statistics a Dataset (core/data/datasets.py) was standardised with."""
    return InputStats(tuple(dataset.mean), tuple(dataset.std), tuple(dataset.class_names))


def stats_path(model_weight_dir: str | Path) -> Path:
    """`<weights>/<model>/input_stats.json` for the folder that holds layer_<i>.pt."""
    return Path(model_weight_dir) / FILE_NAME


def save_input_stats(model_weight_dir: str | Path, stats: InputStats) -> Path:
    path = stats_path(model_weight_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f'.{path.name}.tmp')
    tmp.write_text(json.dumps(stats.to_dict(), indent=1) + '\n')
    tmp.replace(path)
    return path


def load_input_stats(path: str | Path) -> InputStats:
    """Read an input_stats.json; InputStatsError with its path on any problem."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except OSError as exc:
        raise InputStatsError(f'cannot read {path}: {exc.strerror or exc}') from None
    except ValueError as exc:
        raise InputStatsError(f'{path} is not valid JSON: {exc}') from None
    try:
        return InputStats(tuple(float(v) for v in raw['mean']),
                          tuple(float(v) for v in raw['std']),
                          tuple(str(n) for n in raw.get('class_names', ())))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputStatsError(f'{path}: expected {{"mean": [...], "std": [...]}}: {exc}') from None
