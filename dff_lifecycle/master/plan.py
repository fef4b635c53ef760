"""
Layer distribution plan: which layer runs on which server, under which names.

Pure Python (no ROS imports): the master builds the plan from a validated
ModelConfig, prints it as a table and turns each entry into a creation request.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
import math
from typing import Any, Collection, Mapping, Sequence

from dff_lifecycle.common.parameter_table import coerce
from dff_lifecycle.common.text_table import format_table
from dff_lifecycle.core.config import ConfigError, LayerSpecConfig, ModelConfig
from dff_lifecycle.master.parameters import PLACEMENTS
from dff_lifecycle.nodes.parameters import LAYER_PARAMETERS

PARAMETERS = 'parameters'  # the source named by errors in the master's own settings


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
        return format_table(
            ('layer', 'type', 'shape', 'server', 'node', 'input', 'output'),
            [(str(p.layer.index), p.layer.module, f'{p.layer.in_features}->{p.layer.out_features}',
              p.server, p.full_name, p.topics.train_in, p.topics.train_out or '-')
             for p in self.placements])


def model_topics(model: str) -> tuple[str, str, str]:
    """(train input, inference input, result) topics of a model."""
    return f'/{model}/input/train', f'/{model}/input/infer', f'/{model}/results'


def layer_node_name(index: int) -> str:
    return f'layer_{index}'


def check_placement(num_layers: int, policy: str, pins: Mapping[int, str]) -> None:
    """Check what can be checked before any server is known: the policy, and pinned indices."""
    if policy not in PLACEMENTS:
        raise ConfigError(PARAMETERS, 'placement',
                          f'unknown placement {policy!r} (known: {", ".join(PLACEMENTS)})')
    if policy == 'pinned' and not pins:
        raise ConfigError(PARAMETERS, 'pins',
                          'placement "pinned" needs at least one pin (layer:server)')
    for index in pins:
        if not 0 <= index < num_layers:
            raise ConfigError(PARAMETERS, 'pins', f'pin for layer {index}: the model has '
                              f'layers 0..{num_layers - 1}')


def assign_servers(num_layers: int, servers: Sequence[str], policy: str,
                   pins: Mapping[int, str] | None = None) -> list[str]:
    """Server for each layer index under a placement policy."""
    pins = dict(pins or {})
    check_placement(num_layers, policy, pins)
    if not servers:
        raise ConfigError(PARAMETERS, 'servers', 'no server containers to place layers on')
    for index, server in pins.items():
        if server not in servers:
            raise ConfigError(PARAMETERS, 'pins', f'pin layer {index} -> {server}: no such '
                              f'server (found: {", ".join(servers)})')
    if policy == 'round_robin':
        chosen = [servers[i % len(servers)] for i in range(num_layers)]
    else:  # contiguous blocks, the paper's layout; also the fallback for unpinned layers
        block = math.ceil(num_layers / len(servers))
        chosen = [servers[i // block] for i in range(num_layers)]
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
        for key, value in (extra_parameters or {}).items():
            if key not in LAYER_PARAMETERS:
                raise ConfigError(PARAMETERS, key, 'is not a layer node parameter')
            try:
                params[key] = coerce(value, LAYER_PARAMETERS[key].type)
            except ValueError as err:
                raise ConfigError(PARAMETERS, key, str(err)) from err
        placements.append(LayerPlacement(row, server, f'/{name}', node, topics, params))
    return DistributionPlan(name, tuple(placements))


def layer_parameters(model: ModelConfig, row: LayerSpecConfig,
                     topics: LayerTopics) -> dict[str, Any]:
    """ROS parameters of one layer node, typed as the layer node's table declares them."""
    steps = model.training.steps_per_layer if model.training.mode == 'full_batch' else 1
    values = {
        'model': model.name,
        'layer_index': row.index,
        'layer_type': row.module,
        'in_features': row.in_features,
        'out_features': row.out_features,
        'seed': row.seed,
        **row.hparams.to_dict(),
        'steps_per_batch': steps,
        **batch_rows(model),
        # Fed by the master: it sends each image once and the layer overlays the labels.
        'overlay_classes': model.num_classes if model.supervised and row.source_index < 0 else 0,
        'report_goodness': model.supervised and row.index in model.goodness_layers,
        'report_features': (not model.supervised) and row.index in model.feature_layers,
        'train_in_topic': topics.train_in,
        'infer_in_topic': topics.infer_in,
        'train_out_topic': topics.train_out,
        'infer_out_topic': topics.infer_out,
        'result_topic': topics.result,
        'status_topic': topics.status,
    }
    return {name: coerce(value, LAYER_PARAMETERS[name].type) for name, value in values.items()}


def batch_rows(model: ModelConfig) -> dict[str, int]:
    """Return the largest batches a layer of `model` sees, for its memory check."""
    t = model.training
    train = 2 * (t.batch_size if t.mode == 'minibatch' else (t.train_limit or 60_000))
    infer = t.eval_batch_size * (model.num_classes if model.supervised else 1)
    return {'train_rows': train, 'infer_rows': infer}


def parse_pins(items: Sequence[str]) -> dict[int, str]:
    """Parse ['0:server_1', '1:server_2'] into {0: 'server_1', 1: 'server_2'}."""
    pins: dict[int, str] = {}
    for item in items:
        index, sep, server = item.partition(':')
        if not sep or not index.strip().isdecimal() or not server.strip():
            raise ConfigError(PARAMETERS, 'pins',
                              f'pin {item!r}: expected "<layer index>:<server name>"')
        if int(index) in pins:
            raise ConfigError(PARAMETERS, 'pins', f'layer {int(index)} is pinned twice')
        pins[int(index)] = server.strip()
    return pins


def move_layers(plan: DistributionPlan, lost: Collection[str], targets: Sequence[str]
                ) -> tuple[DistributionPlan, list[LayerPlacement]]:
    """
    Re-plan the layers of `lost` servers onto `targets`: (new plan, moved placements).

    Each moved layer goes to the target hosting the fewest layers so far (the first
    such target on a tie), so the survivors share the load. Names, topics and
    parameters stay: the pipeline's wiring does not depend on where a layer runs.
    """
    if not targets:
        raise ConfigError(PARAMETERS, 'servers', 'no surviving server container to move '
                          f'the layers of {", ".join(sorted(lost))} to')
    load = {t: sum(1 for p in plan.placements if p.server == t) for t in targets}
    placements, moved = [], []
    for p in plan.placements:
        if p.server in lost:
            target = min(targets, key=lambda t: load[t])  # min keeps the first of equals
            load[target] += 1
            p = replace(p, server=target)
            moved.append(p)
        placements.append(p)
    return DistributionPlan(plan.model, tuple(placements)), moved
