"""Supervised classifier head on frozen FF features (second stage of unsupervised models)."""
from dataclasses import dataclass
from typing import Optional, Union

from dff_lifecycle.core.ff.layers import reset_linear_
import torch
from torch import nn, Tensor
import torch.nn.functional as F


@dataclass(frozen=True)
class HeadConfig:
    """
    Head size, training schedule and input scaling; hidden=0 means a linear classifier.

    standardise: scale each feature to zero mean and unit variance over the training set
    (the statistics are then applied to the test features too), instead of feeding the
    per-layer unit-length features as they are. Conv feature maps give thousands of features
    of size ~1/sqrt(D) each, which an Adam-trained head fits slowly.
    """

    hidden: int = 2000
    epochs: int = 20
    lr: float = 1e-3
    batch_size: int = 256
    weight_decay: float = 0.0
    standardise: bool = False

    def validate(self) -> 'HeadConfig':
        """Raise ValueError naming the first bad field; return self so calls can chain."""
        for name, minimum in (('hidden', 0), ('epochs', 1), ('batch_size', 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f'head {name} must be an int >= {minimum}, got {value!r}')
        if not _is_number(self.lr) or not self.lr > 0:
            raise ValueError(f'head lr must be a number > 0, got {self.lr!r}')
        if not _is_number(self.weight_decay) or not self.weight_decay >= 0:
            raise ValueError(f'head weight_decay must be a number >= 0, got {self.weight_decay!r}')
        if not isinstance(self.standardise, bool):
            raise ValueError(f'head standardise must be true or false, got {self.standardise!r}')
        return self


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


STD_FLOOR = 1e-3  # a feature that never varies is centred, not blown up


@dataclass(frozen=True)
class Standardiser:
    """Per-feature mean and spread, measured on the training features."""

    mean: Tensor
    std: Tensor

    @classmethod
    def fit(cls, features: Tensor, chunk: int = 8192) -> 'Standardiser':
        """Measure in float64 chunks, so 60k x 10k features need no second full-size copy."""
        if features.dim() != 2 or features.shape[0] < 2:
            raise ValueError(f'standardising needs (N >= 2, D) features, got '
                             f'{tuple(features.shape)}')
        total = torch.zeros(features.shape[1], dtype=torch.float64)
        squares = torch.zeros_like(total)
        for start in range(0, features.shape[0], chunk):
            part = features[start:start + chunk].to(torch.float64)
            total += part.sum(0)
            squares += part.square().sum(0)
        n = features.shape[0]
        mean = total / n
        variance = (squares - n * mean.square()).clamp_min(0) / (n - 1)
        return cls(mean.float(), variance.sqrt().float().clamp_min(STD_FLOOR))

    def __call__(self, features: Tensor) -> Tensor:
        return (features - self.mean.to(features.device)) / self.std.to(features.device)


class ClassifierHead(nn.Module):
    """Linear -> ReLU -> Linear producing logits (a single Linear when hidden == 0)."""

    def __init__(self, in_features: int, num_classes: int, hidden: int = 2000,
                 generator: Optional[torch.Generator] = None) -> None:
        super().__init__()
        if in_features < 1 or num_classes < 2 or hidden < 0:
            raise ValueError(f'bad head sizes: in_features={in_features}, '
                             f'num_classes={num_classes}, hidden={hidden}')
        if hidden:
            self.net = nn.Sequential(_linear(in_features, hidden, generator), nn.ReLU(),
                                     _linear(hidden, num_classes, generator))
        else:
            self.net = nn.Sequential(_linear(in_features, num_classes, generator))

    def forward(self, features: Tensor) -> Tensor:
        return self.net(features)


def _linear(in_features: int, out_features: int,
            generator: Optional[torch.Generator]) -> nn.Linear:
    """Linear layer initialised from `generator` (skip_init leaves the global RNG alone)."""
    linear = nn.utils.skip_init(nn.Linear, in_features, out_features)
    reset_linear_(linear.weight, linear.bias, generator)
    return linear


def train_head(features: Tensor, labels: Tensor, num_classes: int, cfg: HeadConfig,
               generator: torch.Generator,
               device: Union[str, torch.device] = 'cpu') -> ClassifierHead:
    """Train a head with Adam on cross-entropy; batches are moved to `device` one at a time."""
    cfg.validate()
    if features.dim() != 2 or labels.shape != (features.shape[0],) or features.shape[0] == 0:
        raise ValueError(f'train_head needs features (N, D) and labels (N,), got '
                         f'{tuple(features.shape)} and {tuple(labels.shape)}')
    device = torch.device(device)
    head = ClassifierHead(features.shape[1], num_classes, cfg.hidden, generator).to(device)
    optimizer = torch.optim.Adam(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    head.train()
    n = features.shape[0]
    for _ in range(cfg.epochs):
        order = torch.randperm(n, generator=generator, device=generator.device)
        for start in range(0, n, cfg.batch_size):
            batch = order[start:start + cfg.batch_size]
            x = features[batch.to(features.device)].to(device)
            y = labels[batch.to(labels.device)].to(device)
            # Logits in, softmax applied once inside cross_entropy (stable log-sum-exp).
            loss = F.cross_entropy(head(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    head.eval()
    return head


@torch.no_grad()
def head_predict(head: ClassifierHead, features: Tensor, batch_size: int = 1024) -> Tensor:
    """(N,) predicted labels, on the features' device."""
    if batch_size < 1:
        raise ValueError(f'batch_size must be >= 1, got {batch_size}')
    device = next(head.parameters()).device
    head.eval()
    predictions = [head(features[start:start + batch_size].to(device)).argmax(dim=1)
                   for start in range(0, features.shape[0], batch_size)]
    if not predictions:
        return torch.empty(0, dtype=torch.long, device=features.device)
    return torch.cat(predictions).to(features.device)
