"""
Evaluation, one path for the single process and the distributed master.

A model is evaluated through one of two functions that the caller supplies:

- `label_scores(x, split)`: (N, C) goodness of every label's overlay of images x
  (supervised models predict the label with the most goodness);
- `features(x, split)`: (N, F) normalised activities of the feature layers
  (unsupervised models train a classifier head on them).

`split` ('train' or 'test') names the pass, for progress bars and stream names.
The single process computes both from its network's activities
(`scores_from_activities`, `features_from_activities`); the master computes
them through the layer nodes. The rest (which samples, the seeded head, the
train-accuracy sample) is here, once.
"""
from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Callable, Optional, Sequence

from dff_lifecycle.core.config import ModelConfig
from dff_lifecycle.core.data.datasets import Dataset
from dff_lifecycle.core.ff.head import head_predict, Standardiser, train_head
from dff_lifecycle.core.ff.scoring import (accuracy, label_scores, layer_goodness,
                                           normalised_features, predict_labels)
from dff_lifecycle.core.objectives.class_groups import class_scores, group_goodness
from dff_lifecycle.core.stage.batches import inference_inputs
import torch
from torch import Tensor

ActivityFn = Callable[[Tensor], Sequence[Tensor]]  # input batch -> every layer's activities
ScoresFn = Callable[[Tensor, str], Tensor]         # (images, split) -> (N, C) label scores
FeaturesFn = Callable[[Tensor, str], Tensor]       # (images, split) -> (N, F) features


@dataclass(frozen=True)
class Evaluation:
    test_accuracy: float
    train_accuracy: float
    train_accuracy_samples: int

    def train_text(self) -> str:
        """`train accuracy 0.9123`, or that it was not measured (train_eval_limit: 0)."""
        if not self.train_accuracy_samples:
            return 'train accuracy not measured'
        return f'train accuracy {self.train_accuracy:.4f}'

    def to_dict(self) -> dict:
        return {'test_accuracy': self.test_accuracy, 'train_accuracy': self.train_accuracy,
                'train_accuracy_samples': self.train_accuracy_samples}


# ------------------------------------------------------------- from a local network

def supervised_scores(activity_fn: ActivityFn, x: Tensor, model_cfg: ModelConfig) -> Tensor:
    """
    Return (N, C) class scores from model_cfg.goodness_layers.

    pos_neg: the goodness of each label's overlay summed over the layers; class_groups: the
    layers' class-group goodness combined by class_scores (one pass per image).
    """
    reductions = [model_cfg.layers[i].hparams.goodness for i in model_cfg.goodness_layers]
    batch_size = model_cfg.training.eval_batch_size
    scores = []
    for start in range(0, len(x), batch_size):
        activities = activity_fn(inference_inputs(x[start:start + batch_size], model_cfg))
        chosen = [activities[i] for i in model_cfg.goodness_layers]
        if model_cfg.class_groups:
            goodness = [group_goodness(h, model_cfg.num_classes, reduction)
                        for h, reduction in zip(chosen, reductions)]
        else:
            goodness = layer_goodness(chosen, reductions)
        scores.append(scores_from_goodness(goodness, model_cfg).cpu())
    return torch.cat(scores)


def scores_from_goodness(goodness: Sequence[Tensor], model_cfg: ModelConfig) -> Tensor:
    """
    (N, C) class scores from the goodness_layers' goodness, as the layers report it.

    pos_neg: (N*C,) goodness of the label candidates per layer, summed. class_groups:
    (N, C) group goodness per layer, as logits (times each layer's logit_scale) combined
    by class_scores.
    """
    if model_cfg.class_groups:
        scales = [model_cfg.layers[i].hparams.logit_scale for i in model_cfg.goodness_layers]
        return class_scores([g * scale for g, scale in zip(goodness, scales)])
    return label_scores(list(goodness), model_cfg.num_classes)


def head_features(activity_fn: ActivityFn, x: Tensor, model_cfg: ModelConfig) -> Tensor:
    """(N, F) per-layer L2-normalised activities of model_cfg.feature_layers, on the CPU."""
    batch_size = model_cfg.training.eval_batch_size
    features = []
    for start in range(0, len(x), batch_size):
        activities = activity_fn(inference_inputs(x[start:start + batch_size], model_cfg))
        # A stage reports its output: after its fused pools (core.model_graph).
        chosen = [activities[model_cfg.stage(i).output_row] for i in model_cfg.feature_layers]
        features.append(normalised_features(chosen).cpu())
    return torch.cat(features)


def scores_from_activities(activity_fn: ActivityFn, model_cfg: ModelConfig) -> ScoresFn:
    return lambda x, _split: supervised_scores(activity_fn, x, model_cfg)


def features_from_activities(activity_fn: ActivityFn, model_cfg: ModelConfig) -> FeaturesFn:
    return lambda x, _split: head_features(activity_fn, x, model_cfg)


def evaluate_supervised(activity_fn: ActivityFn, x: Tensor, y: Tensor,
                        model_cfg: ModelConfig) -> float:
    """Accuracy of goodness-based label prediction of a local network."""
    return accuracy(predict_labels(supervised_scores(activity_fn, x, model_cfg)), y)


# ------------------------------------------------------------------- the one path

def train_accuracy_count(dataset: Dataset, model_cfg: ModelConfig) -> int:
    """How many training samples the train accuracy is measured on."""
    training = model_cfg.training
    return min(len(dataset.x_train[:training.train_limit]), training.train_eval_limit)


def evaluate(model_cfg: ModelConfig, dataset: Dataset, *,
             label_scores_fn: Optional[ScoresFn] = None,
             features_fn: Optional[FeaturesFn] = None,
             device: torch.device | str = 'cpu') -> Evaluation:
    """
    Test accuracy, and train accuracy on up to `training.train_eval_limit` samples.

    Supervised models need `label_scores_fn`; unsupervised ones need `features_fn` and
    a head config (the head trains on `device`, seeded from the config's seed).
    """
    training = model_cfg.training
    x_test, y_test = dataset.x_test[:training.test_limit], dataset.y_test[:training.test_limit]
    n_train = train_accuracy_count(dataset, model_cfg)
    if model_cfg.supervised:
        if label_scores_fn is None:
            raise ValueError(f'{model_cfg.name}: supervised evaluation needs label scores')

        def predicted(x: Tensor, split: str) -> Tensor:
            return predict_labels(label_scores_fn(x, split))

        return Evaluation(
            test_accuracy=accuracy(predicted(x_test, 'test'), y_test),
            train_accuracy=(accuracy(predicted(dataset.x_train[:n_train], 'train'),
                                     dataset.y_train[:n_train]) if n_train else math.nan),
            train_accuracy_samples=n_train)
    if features_fn is None or model_cfg.head is None:
        raise ValueError(f'{model_cfg.name}: unsupervised evaluation needs features and a '
                         'head config')
    x_train, y_train = (dataset.x_train[:training.train_limit],
                        dataset.y_train[:training.train_limit])
    train_features = features_fn(x_train, 'train')
    scale = Standardiser.fit(train_features) if model_cfg.head.standardise else None
    if scale is not None:
        train_features = scale(train_features)
    # Own generator, seeded from the config, so the head does not depend on how training went.
    generator = torch.Generator().manual_seed(training.seed)
    head = train_head(train_features, y_train, model_cfg.num_classes, model_cfg.head, generator,
                      device)
    test_features = features_fn(x_test, 'test')
    if scale is not None:
        test_features = scale(test_features)

    def head_accuracy(features: Tensor, labels: Tensor) -> float:
        return accuracy(head_predict(head, features, model_cfg.head.batch_size), labels)

    return Evaluation(test_accuracy=head_accuracy(test_features, y_test),
                      train_accuracy=(head_accuracy(train_features[:n_train], y_train[:n_train])
                                      if n_train else math.nan),
                      train_accuracy_samples=n_train)
