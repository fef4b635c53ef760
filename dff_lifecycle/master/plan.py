"""
Layer distribution plan: which layer runs on which server, under which names.

Pure Python (no ROS imports): the master builds the plan from a validated
ModelConfig, prints it as a table and turns each entry into a creation request.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
import math
from typing import Any, Collection, Mapping, Optional, Sequence

from dff_lifecycle.common.memory_limit import mib
from dff_lifecycle.common.parameter_table import coerce
from dff_lifecycle.common.ports import (encode_shape, INPUT_PORTS, OUTPUT_PORTS, PortBinding,
                                        TENSOR_TYPE)
from dff_lifecycle.common.text_table import format_table
from dff_lifecycle.core.config import ConfigError, LayerSpecConfig, ModelConfig
from dff_lifecycle.core.ff.layers import LAYER_TYPES
from dff_lifecycle.core.ff.memory import layer_node_bytes, parameter_count
from dff_lifecycle.core.ff.sharding import shard_ranges, SPLITTABLE, UNSPLITTABLE_NORMS
from dff_lifecycle.core.stage.model_graph import MODEL_INPUT, Stage
from dff_lifecycle.master.balance import balanced_blocks
from dff_lifecycle.master.parameters import PLACEMENTS
from dff_lifecycle.nodes.parameters import LAYER_PARAMETERS

PARAMETERS = 'parameters'  # the source named by errors in the master's own settings
SHARD_UNITS = 100_000      # LayerPlacement.unit of shard k > 0: row index + k * this


@dataclass(frozen=True)
class LayerTopics:
    """
    The port bindings of one layer node: what it subscribes to and publishes on.

    Derived from its type's ports in the layer config; an output port that nothing reads
    is left out (so the last layer publishes no activities).
    """

    inputs: tuple[PortBinding, ...]
    outputs: tuple[PortBinding, ...]

    def _topics(self, bindings: tuple[PortBinding, ...], port: str) -> list[str]:
        return [b.topic for b in bindings if b.port == port]

    def _one(self, bindings: tuple[PortBinding, ...], port: str) -> str:
        return ', '.join(self._topics(bindings, port))

    @property
    def train_in(self) -> str:
        return self._one(self.inputs, 'train')

    @property
    def infer_in(self) -> str:
        return self._one(self.inputs, 'infer')

    @property
    def train_out(self) -> str:
        """'' when no layer consumes this layer's output."""
        return self._one(self.outputs, 'train')

    @property
    def infer_out(self) -> str:
        return self._one(self.outputs, 'infer')

    @property
    def result(self) -> str:
        return self._one(self.outputs, 'result')

    @property
    def status(self) -> str:
        return self._one(self.outputs, 'status')

    def input_topics(self) -> list[str]:
        return [b.topic for b in self.inputs]


@dataclass(frozen=True)
class LayerPlacement:
    layer: LayerSpecConfig
    server: str
    namespace: str
    node_name: str
    topics: LayerTopics
    parameters: Mapping[str, Any] = field(default_factory=dict)

    post_ops: tuple[str, ...] = ()   # fused rows after the layer, e.g. 'MaxPool2d'
    in_shape: tuple[int, ...] = ()
    out_shape: tuple[int, ...] = ()  # what the node sends on (after its post-ops)
    pre_ops: tuple[str, ...] = ()    # fused rows between its Concat and the layer, e.g. 'Flatten'
    shard: int = 0                   # a layer split by output units: which part this is
    shards: int = 1
    replica: int = 0                 # a replicated layer: which copy this is
    replicas: int = 1

    @property
    def full_name(self) -> str:
        return f'{self.namespace}/{self.node_name}'

    @property
    def unit(self) -> int:
        """
        Return the master's key of this layer node.

        The row index, or for shard (or replica) k > 0 of a split (or replicated) layer a
        key above every row index (shard or replica 0 stands for its layer in the metrics).
        """
        return self.layer.index + SHARD_UNITS * (self.shard or self.replica)

    def describe(self) -> str:
        """Name the row type with what runs fused in its node: `FFConv2d+MaxPool2d`."""
        sources = sum(1 for b in self.topics.inputs if b.port == 'train')
        joined = 'Concat+' if sources > 1 else ''
        part = (f' (shard {self.shard + 1}/{self.shards})' if self.shards > 1 else
                f' (replica {self.replica + 1}/{self.replicas})' if self.replicas > 1 else '')
        return joined + '+'.join((*self.pre_ops, self.layer.module, *self.post_ops)) + part


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
            [(str(p.layer.index), p.describe(), shape_text(p.in_shape, p.out_shape),
              p.server, p.full_name, p.topics.train_in, p.topics.train_out or '-')
             for p in self.placements])


def model_topics(model: str) -> tuple[str, str, str]:
    """(train input, inference input, result) topics of a model."""
    return f'/{model}/input/train', f'/{model}/input/infer', f'/{model}/results'


def layer_node_name(index: int, shard: int = 0, shards: int = 1, replica: int = 0) -> str:
    """
    `layer_<i>`; shard k of a layer split in n: `layer_<i>_<k>of<n>`.

    Replica k > 0 of a replicated layer: `layer_<i>_replica<k>` (replica 0 is `layer_<i>`,
    and every replica publishes its activities on layer_<i>'s topics).
    """
    if replica:
        return f'layer_{index}_replica{replica}'
    return f'layer_{index}_{shard}of{shards}' if shards > 1 else f'layer_{index}'


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
                   pins: Mapping[int, str] | None = None,
                   costs: Sequence[float] | None = None) -> list[str]:
    """Server for each layer index under a placement policy (balanced: by `costs`)."""
    pins = dict(pins or {})
    check_placement(num_layers, policy, pins)
    if not servers:
        raise ConfigError(PARAMETERS, 'servers', 'no server containers to place layers on')
    for index, server in pins.items():
        if server not in servers:
            raise ConfigError(PARAMETERS, 'pins', f'pin layer {index} -> {server}: no such '
                              f'server (found: {", ".join(servers)})')
    if policy == 'balanced':
        if costs is None or len(costs) != num_layers:
            raise ConfigError(PARAMETERS, 'stage_costs', f'placement "balanced" needs one cost '
                              f'per layer node ({num_layers}), got '
                              f'{0 if costs is None else len(costs)}')
        chosen = [servers[i] for i in balanced_blocks(costs, len(servers))]
    elif policy == 'round_robin':
        chosen = [servers[i % len(servers)] for i in range(num_layers)]
    else:  # contiguous blocks, the paper's layout; also the fallback for unpinned layers
        block = math.ceil(num_layers / len(servers))
        chosen = [servers[i // block] for i in range(num_layers)]
    for index, server in pins.items():
        chosen[index] = server
    return chosen


def shape_text(in_shape: Sequence[int], out_shape: Sequence[int]) -> str:
    """`784->500`, `1x28x28->8x14x14`."""
    def one(shape: Sequence[int]) -> str:
        return 'x'.join(str(d) for d in shape)
    return f'{one(in_shape)}->{one(out_shape)}'


def output_topic(model: str, node: str, port: str) -> str:
    """
    Topic of a layer node's output port.

    `status` is the node's own `<node>/status`, `result` the model's one results topic the
    master reads, and any other port `p` (train, infer) `<node>/<p>_out`.
    """
    if port == 'status':
        return f'/{model}/{node}/status'
    if port == 'result':
        return model_topics(model)[2]
    return f'/{model}/{node}/{port}_out'


def input_topic(model: str, port: str) -> str:
    """Topic on which the master feeds input port `port` of the layers reading the model input."""
    return f'/{model}/input/{port}'


def build_plan(model: ModelConfig, servers: Sequence[str], policy: str = 'contiguous',
               pins: Mapping[int, str] | None = None,
               extra_parameters: Mapping[str, Any] | None = None,
               costs: Sequence[float] | None = None,
               shards: Mapping[int, int] | None = None,
               replicas: Mapping[int, int] | None = None, sync_every: int = 0,
               train_batches: int = 0) -> DistributionPlan:
    """
    Place every stage of `model` on `servers` and wire its ports.

    One layer node per stage, or one per shard of a layer split by output units (`shards`:
    {row: count}), or one per replica of a replicated layer (`replicas`: {row: count},
    averaged every `sync_every` of the stream's `train_batches`), the shards or replicas on
    distinct servers from the stage's own on.
    """
    name = model.name
    stages = model.stages
    shards = dict(shards or {})
    replicas = dict(replicas or {})
    check_shards(model, shards, len(servers), pins or {})
    check_replicas(model, replicas, len(servers), pins or {}, shards)
    chosen = assign_servers(len(stages), servers, policy, pins, costs)
    ports = _layer_ports(model)
    consumers: dict[int, set[str]] = {}  # stage -> its output ports that something reads
    for stage in stages:
        for source in stage.inputs:
            if source != MODEL_INPUT:
                consumers.setdefault(source, set()).update(ports[stage.index][0])
    placements = []
    for stage, server in zip(stages, chosen):
        row = model.layers[stage.index]
        count = shards.get(stage.index, 1)
        copies = replicas.get(stage.index, 1)
        for part in range(max(count, copies)):
            shard, replica = (part, 0) if count > 1 else (0, part)
            node = layer_node_name(stage.index, shard, count, replica)
            topics = _stage_topics(model, stage, node, ports, consumers.get(stage.index, set()),
                                   shards, shard, replica, copies)
            params = layer_parameters(model, row, topics, shards)
            out_shape = stage.out_shape
            if count > 1:
                params.update(shard_parameters(model, stage.index, shard, count))
                out_shape = shard_out_shape(model, stage.index, shard, count)
            if copies > 1:
                params.update(replica_parameters(row, replica, copies, sync_every, train_batches))
            for key, value in (extra_parameters or {}).items():
                if key not in LAYER_PARAMETERS:
                    raise ConfigError(PARAMETERS, key, 'is not a layer node parameter')
                try:
                    params[key] = coerce(value, LAYER_PARAMETERS[key].type)
                except ValueError as err:
                    raise ConfigError(PARAMETERS, key, str(err)) from err
            where = servers[(list(servers).index(server) + part) % len(servers)]
            placements.append(LayerPlacement(
                row, where, f'/{name}', node, topics, params,
                tuple(op.module for op in stage.post_ops), stage.in_shape, out_shape,
                tuple(op.module for op in stage.pre_ops), shard, count, replica, copies))
    return DistributionPlan(name, tuple(placements))


def parse_shards(items: Sequence[str]) -> dict[int, int]:
    """Parse ['1:4'] (the `shards` parameter) into {1: 4}."""
    return _layer_counts(items, 'shards', '<shards>", e.g. "1:4"', 'split')


def _layer_counts(items: Sequence[str], key: str, form: str, done: str) -> dict[int, int]:
    """Parse "<layer>:<count>" items of parameter `key`; one-line ConfigErrors."""
    found: dict[int, int] = {}
    for item in items:
        index, sep, count = item.partition(':')
        if (not sep or not index.strip().isdecimal() or not count.strip().isdecimal()):
            raise ConfigError(PARAMETERS, key, f'{item!r}: expected "<layer index>:{form}')
        if int(index) in found:
            raise ConfigError(PARAMETERS, key, f'layer {int(index)} is {done} twice')
        found[int(index)] = int(count)
    return found


def parse_replicas(items: Sequence[str]) -> dict[int, int]:
    """Parse ['2:2'] (the `replicas` parameter) into {2: 2}."""
    return _layer_counts(items, 'replicas', '<copies>", e.g. "2:2"', 'replicated')


def check_replicas(model: ModelConfig, replicas: Mapping[int, int], servers: int,
                   pins: Mapping[int, str], shards: Mapping[int, int]) -> None:
    """Refuse replications that cannot run, before anything starts (one line each)."""
    for index, count in replicas.items():
        where = f'layer {index}'
        _check_spread(model, index, count, servers, pins, 'replicas', 'copies', 'replicated')
        if count < 2:
            raise ConfigError(PARAMETERS, 'replicas', f'{where}: {count} copies; replication '
                              'needs at least 2')
        if index in shards:
            raise ConfigError(PARAMETERS, 'replicas', f'{where} is split (shards); a layer is '
                              'split or replicated, not both')
        if model.training.negatives == 'hard':
            raise ConfigError(PARAMETERS, 'replicas', 'hard negatives score the training set '
                              'with the model of each epoch, which replicas hold in parts '
                              'between averages; use another training.negatives')


def replica_parameters(row: LayerSpecConfig, replica: int, copies: int, sync_every: int,
                       train_batches: int) -> dict[str, Any]:
    """Layer node parameters that make a node copy `replica` of `copies` of `row`."""
    values: dict[str, Any] = {'replica_index': replica, 'replica_count': copies,
                              'sync_every': sync_every, 'stream_batches': train_batches}
    horizon = row.hparams.schedule_batches
    if horizon:  # a cosine rate falls over the batches this copy trains
        values['schedule_batches'] = max(1, -(-(horizon - replica) // copies))
    return {key: coerce(value, LAYER_PARAMETERS[key].type) for key, value in values.items()}


def _check_spread(model: ModelConfig, index: int, count: int, servers: int,
                  pins: Mapping[int, str], key: str, parts: str, done: str) -> None:
    """Refuse a layer spread over `count` servers (split or replicated) that cannot be."""
    stage_of = {stage.index for stage in model.stages}
    where = f'layer {index}'
    if index not in stage_of:
        raise ConfigError(PARAMETERS, key, f'{where}: no trainable row of that index '
                          f'(layer nodes: {", ".join(str(i) for i in sorted(stage_of))})')
    if count > servers:
        raise ConfigError(PARAMETERS, key, f'{where}: {count} {parts} need {count} server '
                          f'containers (one each), found {servers}')
    if index in pins:
        raise ConfigError(PARAMETERS, 'pins', f'{where} is {done}: its {parts} go to distinct '
                          'servers, so it cannot be pinned')
    if model.training.mode != 'minibatch':
        raise ConfigError(PARAMETERS, key, f'a {done} layer takes batches one by one: '
                          'training.mode must be minibatch')


def check_shards(model: ModelConfig, shards: Mapping[int, int], servers: int,
                 pins: Mapping[int, str]) -> None:
    """Refuse splits that cannot run, before anything starts (one line each)."""
    read = set()
    for stage in model.stages:
        read.update(s for s in stage.inputs if s != MODEL_INPUT)
    for index, count in shards.items():
        where = f'layer {index}'
        _check_spread(model, index, count, servers, pins, 'shards', 'shards', 'split')
        row = model.layers[index]
        if row.module not in SPLITTABLE:
            raise ConfigError(PARAMETERS, 'shards', f'{where} is a {row.module}; only '
                              f'{", ".join(SPLITTABLE)} rows split by output units')
        units = int(LAYER_TYPES[row.module].parse_args(row.args).values[0])
        if not 2 <= count <= units:
            raise ConfigError(PARAMETERS, 'shards', f'{where}: {count} shards; a split needs '
                              f'2 .. {units} (its units)')
        if index not in read:
            raise ConfigError(PARAMETERS, 'shards', f'{where} feeds no other layer; only a '
                              'layer another one reads can be split (the last reports '
                              'goodness or features whole)')
        if index in (model.goodness_layers if model.supervised else model.feature_layers):
            raise ConfigError(PARAMETERS, 'shards', f'{where} reports goodness or features '
                              'to the master, which a split layer cannot')
        if row.hparams.peer_norm:
            raise ConfigError(PARAMETERS, 'shards', f'{where} uses peer_norm, whose target '
                              "is the mean over all the layer's units: not split")
        if row.hparams.input_norm in UNSPLITTABLE_NORMS:
            raise ConfigError(PARAMETERS, 'shards', f'{where} normalises its input with '
                              f'{row.hparams.input_norm!r}, whose learned parameters the '
                              'shards would each change; use another input_norm')
        for stage in model.stages:
            if index in stage.inputs and len(stage.inputs) > 1 and stage.concat_dim != 1:
                raise ConfigError(PARAMETERS, 'shards', f'{where}: layer {stage.index} joins '
                                  f'it along dim {stage.concat_dim}; the parts of a split '
                                  'layer join along its units (dim 1)')


def shard_args(model: ModelConfig, index: int, shard: int, count: int) -> list[int]:
    """Return the row's args with the width of shard `shard` of `count`."""
    row = model.layers[index]
    values = list(LAYER_TYPES[row.module].parse_args(row.args).values)
    start, stop = shard_ranges(int(values[0]), count)[shard]
    return [stop - start, *values[1:]]


def shard_out_shape(model: ModelConfig, index: int, shard: int, count: int
                    ) -> tuple[int, ...]:
    """Return what one shard's node sends on: its output after the stage's post-ops."""
    stage = model.stage(index)
    shape = LAYER_TYPES[model.layers[index].module].out_shape(
        [stage.in_shape], shard_args(model, index, shard, count))
    for op in stage.post_ops:
        shape = LAYER_TYPES[op.module].out_shape([shape], list(op.args))
    return tuple(shape)


def shard_parameters(model: ModelConfig, index: int, shard: int, count: int) -> dict[str, Any]:
    """Layer node parameters that make a node shard `shard` of `count` of row `index`."""
    row = model.layers[index]
    args = shard_args(model, index, shard, count)
    raw = LAYER_TYPES[row.module].out_shape([model.stage(index).in_shape], args)
    values = {'shard_index': shard, 'shard_count': count,
              'layer_units': int(LAYER_TYPES[row.module].parse_args(row.args).values[0]),
              'layer_args': encode_shape(args), 'out_features': math.prod(raw)}
    return {key: coerce(value, LAYER_PARAMETERS[key].type) for key, value in values.items()}


def _layer_ports(model: ModelConfig) -> dict[int, tuple[dict[str, str], dict[str, str]]]:
    """{stage: (input ports, output ports)} from the layer config the model was checked with."""
    found = {}
    for stage in model.stages:
        module = model.layers[stage.index].module
        spec = model.layer_types.get(module)
        if spec is None:
            raise ConfigError(model.source, f'layers[{stage.index}]', f'{module} has no entry in '
                              'the layer config, so its ports are unknown')
        found[stage.index] = (dict(spec.inputs), dict(spec.outputs))
    return found


def _stage_topics(model: ModelConfig, stage: Stage, node: str,
                  ports: Mapping[int, tuple[dict[str, str], dict[str, str]]],
                  consumed: set[str], shards: Mapping[int, int] | None = None,
                  shard: int = 0, replica: int = 0, copies: int = 1) -> LayerTopics:
    """
    Bind each port of one stage; refuse ports that do not connect.

    A split source is read from each of its shards, in shard order; a shard of a split
    stage also reads its peers' partials and publishes its own. Every replica of a
    replicated stage reads the stage's inputs and publishes on replica 0's activity topics
    (its readers see one source); each also reads its peers' weight snapshots (sync) and
    publishes its own, and its status on its own topic.
    """
    shards = shards or {}
    name, key = model.name, f'layers[{stage.index}]'
    inputs_wanted, outputs = ports[stage.index]
    module = model.layers[stage.index].module
    for port, msg_type in inputs_wanted.items():
        if INPUT_PORTS.get(port) != msg_type:
            raise ConfigError(model.source, key, f'{module} input port {port!r} ({msg_type}): '
                              'a layer node reads only ' + ', '.join(
                                  f'{p} ({t})' for p, t in INPUT_PORTS.items()))
    inputs = []
    for port, msg_type in inputs_wanted.items():
        for source in stage.inputs:
            if source == MODEL_INPUT:
                inputs.append(PortBinding(port, input_topic(name, port), msg_type))
                continue
            source_module = model.layers[source].module
            given = ports[source][1].get(port)
            if given != msg_type:
                offered = ', '.join(f'{p} ({t})' for p, t in ports[source][1].items())
                raise ConfigError(model.source, key, f'{module} input port {port!r} '
                                  f'({msg_type}) reads layer {source} ({source_module}), whose '
                                  f'outputs do not match: {offered}')
            count = shards.get(source, 1)
            inputs += [PortBinding(port, output_topic(name, layer_node_name(source, k, count),
                                                      port), msg_type) for k in range(count)]
    count = shards.get(stage.index, 1)
    inputs += [PortBinding('partials', output_topic(name, layer_node_name(stage.index, k, count),
                                                    'partials'), TENSOR_TYPE)
               for k in range(count) if count > 1 and k != shard]
    inputs += [PortBinding('sync', output_topic(name, layer_node_name(stage.index, replica=k),
                                                'sync'), TENSOR_TYPE)
               for k in range(copies) if copies > 1 and k != replica]
    publishes_as = layer_node_name(stage.index, shard, count)  # replica k: as replica 0
    reports = (model.supervised and stage.index in model.goodness_layers) or (
        not model.supervised and stage.index in model.feature_layers)
    bound = []
    for port, msg_type in outputs.items():
        if OUTPUT_PORTS.get(port) != msg_type:
            raise ConfigError(model.source, key, f'{module} output port {port!r} ({msg_type}): '
                              'a layer node writes only ' + ', '.join(
                                  f'{p} ({t})' for p, t in OUTPUT_PORTS.items()))
        wanted = (port == 'status' or (port == 'result' and reports)
                  or (port not in ('status', 'result') and port in consumed))
        if wanted:
            bound.append(PortBinding(port, output_topic(
                name, node if port == 'status' else publishes_as, port), msg_type))
    if count > 1:
        bound.append(PortBinding('partials', output_topic(name, node, 'partials'), TENSOR_TYPE))
    if copies > 1:
        bound.append(PortBinding('sync', output_topic(name, node, 'sync'), TENSOR_TYPE))
    if 'status' not in outputs:
        raise ConfigError(model.source, key, f'{module} has no status output port: the master '
                          'follows every layer by it')
    if reports and 'result' not in outputs:
        raise ConfigError(model.source, key, f'{module} has no result output port, but the '
                          'model reads its goodness or features')
    return LayerTopics(tuple(inputs), tuple(bound))


def layer_parameters(model: ModelConfig, row: LayerSpecConfig,
                     topics: LayerTopics, shards: Mapping[int, int] | None = None
                     ) -> dict[str, Any]:
    """ROS parameters of one layer node, typed as the layer node's table declares them."""
    steps = model.training.steps_per_layer if model.training.mode == 'full_batch' else 1
    stage = model.stage(row.index)
    input_shapes = []
    for source, shape in zip(stage.inputs, stage.input_shapes):
        count = (shards or {}).get(source, 1)  # a split source: each shard's part
        input_shapes += ([shard_out_shape(model, source, k, count) for k in range(count)]
                         if count > 1 else [shape])
    parsed = LAYER_TYPES[row.module].parse_args(row.args)
    values = {
        'model': model.name,
        'layer_index': row.index,
        'layer_type': row.module,
        'in_features': row.in_features,
        'out_features': row.out_features,
        'in_shape': encode_shape(stage.in_shape),
        'layer_args': encode_shape(parsed.values),
        'input_shapes': [encode_shape(shape) for shape in input_shapes],
        'concat_dim': stage.concat_dim if len(stage.inputs) > 1 else 1,
        'post_ops': [post_op_entry(op.module, op.args) for op in stage.post_ops] or [''],
        'pre_ops': [post_op_entry(op.module, op.args) for op in stage.pre_ops] or [''],
        'seed': row.seed,
        'shard_index': 0, 'shard_count': 1, 'layer_units': 0,  # shard_parameters: a split
        'replica_index': 0, 'replica_count': 1, 'sync_every': 0,  # replica_parameters: a copy
        'stream_batches': 0,
        **row.hparams.to_dict(),
        'steps_per_batch': steps,
        **batch_rows(model),
        # Fed by the master: it sends each image once and the layer overlays the labels.
        'overlay_classes': (model.num_classes
                            if model.overlays_labels and stage.inputs == (MODEL_INPUT,) else 0),
        'report_goodness': model.supervised and row.index in model.goodness_layers,
        'report_features': (not model.supervised) and row.index in model.feature_layers,
        'inputs': [b.encode() for b in topics.inputs] or [''],
        'outputs': [b.encode() for b in topics.outputs] or [''],
    }
    return {name: coerce(value, LAYER_PARAMETERS[name].type) for name, value in values.items()}


def post_op_entry(module: str, args: Sequence[Any]) -> str:
    """`MaxPool2d 2 0`: a post-op row as a layer node's post_ops parameter names it."""
    LAYER_TYPES[module].parse_args(args)  # the config checked them; this keeps it so
    return ' '.join((module, *(str(v) for v in args)))


def batch_rows(model: ModelConfig) -> dict[str, int]:
    """Return the largest batches a layer of `model` sees, for its memory check."""
    t = model.training
    train = 2 * (t.batch_size if t.mode == 'minibatch' else (t.train_limit or 60_000))
    infer = t.eval_batch_size * (model.num_classes if model.overlays_labels else 1)
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


class NoRoom(ValueError):
    """A moved layer fits on no surviving server (one line: the layer, its need, the rooms)."""


def placement_bytes(p: LayerPlacement) -> int:
    """Return what the layer node of `p` needs on its device (the check its configure makes)."""
    values = {name: p.parameters.get(name, LAYER_PARAMETERS[name].default)
              for name in ('in_features', 'out_features', 'optimizer', 'train_rows',
                           'infer_rows', 'resend_cache_mib')}
    weights = parameter_count(p.layer)
    if p.shards > 1:  # this shard's rows only
        weights = LAYER_TYPES[p.layer.module].parameter_count(
            [p.in_shape], [int(v) for v in p.parameters['layer_args'].split(',')])
    return layer_node_bytes(values['in_features'], values['out_features'], values['optimizer'],
                            values['train_rows'], values['infer_rows'], weights,
                            values['resend_cache_mib'], p.replicas)


def move_layers(plan: DistributionPlan, lost: Collection[str], targets: Sequence[str],
                room: Mapping[str, Optional[int]] | None = None,
                extra_bytes: Mapping[str, int] | None = None
                ) -> tuple[DistributionPlan, list[LayerPlacement]]:
    """
    Re-plan the layers of `lost` servers onto `targets`: (new plan, moved placements).

    Each moved layer goes to the target hosting the fewest layers so far (the first
    such target on a tie), so the survivors share the load, among the targets where
    it fits: `room` is what each target may still allocate (None or missing: unknown,
    taken as enough), and a layer needs `placement_bytes` plus its `extra_bytes`
    (the checkpoint it is created from). The largest layers are placed first. Raise
    NoRoom if one fits nowhere. Names, topics and parameters stay: the pipeline's
    wiring does not depend on where a layer runs.
    """
    if not targets:
        raise ConfigError(PARAMETERS, 'servers', 'no surviving server container to move '
                          f'the layers of {", ".join(sorted(lost))} to')
    load = {t: sum(1 for p in plan.placements if p.server == t) for t in targets}
    left = {t: (room or {}).get(t) for t in targets}
    leaving = [p for p in plan.placements if p.server in lost]
    needs = {p.full_name: placement_bytes(p) + (extra_bytes or {}).get(p.full_name, 0)
             for p in leaving}
    chosen: dict[str, str] = {}
    for p in sorted(leaving, key=lambda p: -needs[p.full_name]):  # stable: plan order on ties
        need = needs[p.full_name]
        fits = [t for t in targets if left[t] is None or left[t] >= need]
        if not fits:
            rooms = ', '.join(f'{t} {mib(left[t])}' for t in targets)
            raise NoRoom(f'{p.full_name} needs about {mib(need)} (weights, optimiser state, '
                         f'a batch, its checkpoint) and no surviving device has that much free '
                         f'({rooms})')
        target = min(fits, key=lambda t: load[t])  # min keeps the first of equals
        load[target] += 1
        if left[target] is not None:
            left[target] -= need
        chosen[p.full_name] = target
    placements, moved = [], []
    for p in plan.placements:
        if p.full_name in chosen:
            p = replace(p, server=chosen[p.full_name])
            moved.append(p)
        placements.append(p)
    return DistributionPlan(plan.model, tuple(placements)), moved
