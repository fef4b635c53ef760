"""The plan of a replicated layer: copy nodes, their wiring, and what is refused."""
from __future__ import annotations

from pathlib import Path

from dff_lifecycle.core.config import ConfigError, load_layer_config, load_model_config
from dff_lifecycle.core.run.weights import layer_weight_path
from dff_lifecycle.master.plan import (build_plan, parse_replicas, placement_bytes,
                                       SHARD_UNITS)
from dff_lifecycle.master.run import bundle_setting
from dff_lifecycle.nodes.parameters import LAYER_PARAMETERS
from dff_lifecycle.nodes.stage_wiring import StageWiring
import pytest

REPO = Path(__file__).resolve().parents[2]
DENSE = [[-1, 'FFDense', [400]], [-1, 'FFDense', [300]], [-1, 'FFDense', [100]]]
SERVERS = ['server_1', 'server_2', 'server_3']


@pytest.fixture(scope='module')
def layer_types():
    return load_layer_config(REPO / 'params' / 'layers.yaml')


def model(layer_types, layers=DENSE, **changes):
    config = {'name': 'copies', 'dataset': 'mnist', 'supervised': True, 'goodness_layers': [2],
              'training': {'mode': 'minibatch', 'batch_size': 10, 'epochs': 1},
              'layers': layers, **changes}
    return load_model_config(config, layer_types)


def wiring(p):
    values = {name: p.parameters.get(name, spec.default)
              for name, spec in LAYER_PARAMETERS.items()}
    return StageWiring.from_parameters(values)


def test_a_replicated_layer_becomes_one_node_per_copy_on_distinct_servers(layer_types):
    plan = build_plan(model(layer_types), SERVERS, replicas={1: 2}, sync_every=25,
                      train_batches=600)
    names = [p.node_name for p in plan.placements]
    assert names == ['layer_0', 'layer_1', 'layer_1_replica1', 'layer_2']
    first, second = plan.placements[1:3]
    assert first.server != second.server
    assert [first.unit, second.unit] == [1, 1 + SHARD_UNITS]
    assert [(p.parameters['replica_index'], p.parameters['replica_count'],
             p.parameters['sync_every'], p.parameters['stream_batches'])
            for p in (first, second)] == [(0, 2, 25, 600), (1, 2, 25, 600)]
    assert 'replica 2/2' in plan.table()
    assert placement_bytes(first) > placement_bytes(
        build_plan(model(layer_types), SERVERS).placements[1])  # snapshots on top


def test_copies_read_one_input_publish_as_one_and_swap_snapshots(layer_types):
    plan = build_plan(model(layer_types), SERVERS, replicas={1: 2}, sync_every=10)
    first, second = (wiring(p) for p in plan.placements[1:3])
    assert first.inputs[0] == second.inputs[0]           # both hear layer_0
    assert first.output_topic('train') == second.output_topic('train') == \
        '/copies/layer_1/train_out'
    assert first.output_topic('status') != second.output_topic('status')
    assert [b.topic for b in first.inputs if b.port == 'sync'] == [second.output_topic('sync')]
    assert [b.topic for b in second.inputs if b.port == 'sync'] == [first.output_topic('sync')]
    reader = wiring(plan.placements[3])
    assert [b.topic for b in reader.inputs if b.port == 'train'] == ['/copies/layer_1/train_out']


def test_a_cosine_rate_falls_over_the_batches_each_copy_trains(layer_types):
    cosine = model(layer_types, layer_defaults={'lr_schedule': 'cosine'})
    plan = build_plan(cosine.with_schedule_horizon(601), SERVERS, replicas={1: 2},
                      train_batches=601)
    assert [p.parameters['schedule_batches'] for p in plan.placements] == [601, 301, 300, 601]


def test_replicated_layers_send_batch_by_batch_and_their_files_do_not_collide(layer_types):
    plan = build_plan(model(layer_types), SERVERS, replicas={1: 3}, sync_every=5)
    assert bundle_setting(plan, {'bundle': 0}) == 1
    assert bundle_setting(build_plan(model(layer_types), SERVERS), {'bundle': 0}) == 0
    files = {layer_weight_path('w', 'copies', 1, replica=k) for k in range(3)}
    assert len(files) == 3 and layer_weight_path('w', 'copies', 1) in files


@pytest.mark.parametrize('replicas, changes, message', [
    ({1: 1}, {}, 'at least 2'),
    ({1: 4}, {}, 'need 4 server containers'),
    ({7: 2}, {}, 'no trainable row of that index'),
    ({1: 2}, {'training': {'mode': 'minibatch', 'batch_size': 10, 'epochs': 1,
                           'negatives': 'hard'}}, 'hard negatives'),
])
def test_replications_that_cannot_run_are_refused_in_one_line(layer_types, replicas, changes,
                                                              message):
    with pytest.raises(ConfigError, match=message) as info:
        build_plan(model(layer_types, **changes), SERVERS, replicas=replicas)
    assert '\n' not in str(info.value)


def test_split_and_pinned_layers_cannot_also_be_replicated(layer_types):
    with pytest.raises(ConfigError, match='split or replicated, not both'):
        build_plan(model(layer_types), SERVERS, shards={1: 2}, replicas={1: 2})
    with pytest.raises(ConfigError, match='cannot be pinned'):
        build_plan(model(layer_types), SERVERS, 'pinned', {1: 'server_1'}, replicas={1: 2})


@pytest.mark.parametrize('items, message', [
    (['1'], 'expected "<layer index>:<copies>"'),
    (['a:2'], 'expected'),
    (['1:2', '1:3'], 'replicated twice'),
])
def test_the_replicas_parameter_is_parsed_with_one_line_errors(items, message):
    with pytest.raises(ConfigError, match=message):
        parse_replicas(items)
    assert parse_replicas(['2:3', ' 0:2']) == {2: 3, 0: 2}
