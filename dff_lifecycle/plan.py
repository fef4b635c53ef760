"""Layer distribution plan: which layer runs on which server, under which names.

Pure Python (no ROS imports): the master builds the plan from a validated
ModelConfig, prints it as a table and turns each entry into a creation request.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from dff_lifecycle.core.config import ConfigError, LayerSpecConfig, ModelConfig

PLACEMENTS = ('contiguous', 'round_robin', 'pinned')


@dataclass(frozen=True)
class LayerTopics:
    """Absolute topic names one layer node reads and writes."""

    train_in: str
    infer_in: str
    train_out: str   # '' when no layer consumes this layer's output
    infer_out: str
    result: str
    status: str


@dataclass(frozen=True)
class LayerPlacement:
    layer: LayerSpecConfig
    server: str
    namespace: str
    node_name: str
    topics: LayerTopics
    parameters: Mapping[str, Any] = field(default_factory=dict)

    @property
    def full_name(self) -> str:
        return f'{self.namespace}/{self.node_name}'


@dataclass(frozen=True)
class DistributionPlan:
    model: str
    placements: tuple[LayerPlacement, ...]

    def by_server(self) -> dict[str, list[LayerPlacement]]:
        grouped: dict[str, list[LayerPlacement]] = {}
        for p in self.placements:
            grouped.setdefault(p.server, []).append(p)
        return grouped

    def table(self) -> str:
        rows = [('layer', 'type', 'shape', 'server', 'node', 'input', 'output')]
        for p in self.placements:
            rows.append((str(p.layer.index), p.layer.module,
                         f'{p.layer.in_features}->{p.layer.out_features}', p.server,
                         p.full_name, p.topics.train_in, p.topics.train_out or '-'))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ['  '.join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        lines.insert(1, '  '.join('-' * w for w in widths))
        return '\n'.join(lines)


def model_topics(model: str) -> tuple[str, str, str]:
    """(train input, inference input, result) topics of a model."""
    return f'/{model}/input/train', f'/{model}/input/infer', f'/{model}/results'


def layer_node_name(index: int) -> str:
    return f'layer_{index}'


def assign_servers(num_layers: int, servers: Sequence[str], policy: str,
                   pins: Mapping[int, str] | None = None) -> list[str]:
    """Server for each layer index under a placement policy."""
    if not servers:
        raise ConfigError('no server containers to place layers on')
    if policy not in PLACEMENTS:
        raise ConfigError(f'unknown placement {policy!r} (known: {", ".join(PLACEMENTS)})')
    pins = dict(pins or {})
    for index, server in pins.items():
        if not 0 <= index < num_layers:
            raise ConfigError(f'pin for layer {index}: the model has layers 0..{num_layers - 1}')
        if server not in servers:
            raise ConfigError(f'pin layer {index} -> {server}: no such server '
                              f'(found: {", ".join(servers)})')
    if policy == 'round_robin':
        chosen = [servers[i % len(servers)] for i in range(num_layers)]
    else:  # contiguous blocks, the paper's layout; also the fallback for unpinned layers
        block = math.ceil(num_layers / len(servers))
        chosen = [servers[i // block] for i in range(num_layers)]
    if policy == 'pinned' and not pins:
        raise ConfigError('placement "pinned" needs at least one pin (layer:server)')
    for index, server in pins.items():
        chosen[index] = server
    return chosen


def build_plan(model: ModelConfig, servers: Sequence[str], policy: str = 'contiguous',
               pins: Mapping[int, str] | None = None,
               extra_parameters: Mapping[str, Any] | None = None) -> DistributionPlan:
    """Place every layer of `model` on `servers` and wire its topics."""
    name = model.name
    train_in, infer_in, result = model_topics(name)
    consumers = {row.source_index for row in model.layers}
    chosen = assign_servers(len(model.layers), servers, policy, pins)
    placements = []
    for row, server in zip(model.layers, chosen):
        node = layer_node_name(row.index)
        src = '' if row.source_index < 0 else f'/{name}/{layer_node_name(row.source_index)}'
        base = f'/{name}/{node}'
        topics = LayerTopics(
            train_in=f'{src}/train_out' if src else train_in,
            infer_in=f'{src}/infer_out' if src else infer_in,
            train_out=f'{base}/train_out' if row.index in consumers else '',
            infer_out=f'{base}/infer_out' if row.index in consumers else '',
            result=result,
            status=f'{base}/status')
        params = layer_parameters(model, row, topics)
        params.update(extra_parameters or {})
        placements.append(LayerPlacement(row, server, f'/{name}', node, topics, params))
    return DistributionPlan(name, tuple(placements))


def layer_parameters(model: ModelConfig, row: LayerSpecConfig,
                     topics: LayerTopics) -> dict[str, Any]:
    """ROS parameters of one layer node (names match FFLayerNode's declarations)."""
    hp = row.hparams
    steps = model.training.steps_per_layer if model.training.mode == 'full_batch' else 1
    return {
        'model': model.name,
        'layer_index': row.index,
        'layer_type': row.module,
        'in_features': row.in_features,
        'out_features': row.out_features,
        'seed': row.seed,
        'threshold': float(hp.threshold),
        'lr': float(hp.lr),
        'goodness': hp.goodness,
        'loss': hp.loss,
        'symba_alpha': float(hp.symba_alpha),
        'optimizer': hp.optimizer,
        'weight_decay': float(hp.weight_decay),
        'steps_per_batch': int(steps),
        'report_goodness': model.supervised and row.index in model.goodness_layers,
        'report_features': (not model.supervised) and row.index in model.feature_layers,
        'train_in_topic': topics.train_in,
        'infer_in_topic': topics.infer_in,
        'train_out_topic': topics.train_out,
        'infer_out_topic': topics.infer_out,
        'result_topic': topics.result,
        'status_topic': topics.status,
    }


def parse_pins(items: Sequence[str]) -> dict[int, str]:
    """Parse ['0:server_1', '1:server_2'] into {0: 'server_1', 1: 'server_2'}."""
    pins: dict[int, str] = {}
    for item in items:
        index, sep, server = item.partition(':')
        if not sep or not index.strip().isdigit() or not server.strip():
            raise ConfigError(f'pin {item!r}: expected "<layer index>:<server name>"')
        pins[int(index)] = server.strip()
    return pins
