"""
The model of one run: both configs, with the run's epochs, seed and overrides applied.

The one-shot commands (parameters) and the `train` action (goals) ask for a
model the same way, a `RunRequest`, and get it checked in one place:
`core.config` reads the files, then reads the changed model again as data, so an
override is held to the same rules as the file (`training.batch_size:=0` is
refused like `batch_size: 0`), and the message names the file and the key.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

from dff_lifecycle.common.overrides import apply_overrides, Override, OverrideError
from dff_lifecycle.common.package_files import resolve_config_path
from dff_lifecycle.core.config import (ConfigError, load_layer_config, load_model_config,
                                       ModelConfig)

OVERRIDES = 'overrides'  # the source named by errors in the overrides themselves


@dataclass(frozen=True)
class RunRequest:
    """What to train: the config paths and what the run changes in the model config."""

    model_config: str
    layer_config: str
    epochs: int = 0                  # 0: the model config's training.epochs
    seed: Optional[int] = None       # None: the model config's training.seed
    overrides: tuple[str, ...] = ()  # `dotted.key:=value`, in order (common/overrides.py)


def load_run_model(request: RunRequest) -> ModelConfig:
    """
    Return the checked model config of `request`; raise ConfigError (one line).

    Relative paths: from the current folder, else from the package (repo or share).
    The seed goes through the config again (every layer's seed derives from it); the
    epochs replace training.epochs last, so `--epochs` beats `-o training.epochs:=`.
    """
    layer_types = load_layer_config(resolve_config_path(request.layer_config))
    path = resolve_config_path(request.model_config)
    model = load_model_config(path, layer_types)
    changes = list(request.overrides)
    if request.seed is not None:
        changes.append(Override(('training', 'seed'), request.seed, f'seed {request.seed}'))
    if changes:
        try:
            data = apply_overrides(model.to_dict(), changes)
        except OverrideError as err:
            raise ConfigError(OVERRIDES, '', str(err)) from err
        try:
            model = replace(load_model_config(data, layer_types), source=model.source)
        except ConfigError as err:
            raise ConfigError(f'{path} with overrides', err.key, err.problem) from err
    if request.epochs:
        model = replace(model, training=replace(model.training, epochs=request.epochs))
    return model
