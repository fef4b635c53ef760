"""The plan of a layer split by output units: shard nodes, their wiring, and what is refused."""
from __future__ import annotations

from pathlib import Path

from dff_lifecycle.core.config import ConfigError, load_layer_config, load_model_config
from dff_lifecycle.master.plan import (build_plan, NoRoom, parse_shards, placement_bytes,
                                       SHARD_UNITS)
from dff_lifecycle.master.run import bundle_setting, check_rooms
from dff_lifecycle.nodes.parameters import LAYER_PARAMETERS
from dff_lifecycle.nodes.stage_wiring import StageWiring
import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope='module')
def layer_types():
    return load_layer_config(REPO / 'params' / 'layers.yaml')


def model(layer_types, layers, **changes):
    config = {'name': 'split', 'dataset': 'mnist', 'supervised': True, 'goodness_layers': [2],
              'training': {'mode': 'minibatch', 'batch_size': 10, 'epochs': 1},
              'layers': layers, **changes}
    return load_model_config(config, layer_types)


DENSE = [[-1, 'FFDense', [400]], [-1, 'FFDense', [300]], [-1, 'FFDense', [100]]]
SERVERS = ['server_1', 'server_2', 'server_3']


def parameters(p):
    return {name: p.parameters.get(name, spec.default) for name, spec in LAYER_PARAMETERS.items()}


def test_a_split_layer_becomes_one_node_per_shard_on_distinct_servers(layer_types):
    plan = build_plan(model(layer_types, DENSE), SERVERS, shards={1: 3})
    names = [p.node_name for p in plan.placements]
    assert names == ['layer_0', 'layer_1_0of3', 'layer_1_1of3', 'layer_1_2of3', 'layer_2']
    shards = plan.placements[1:4]
    assert len({p.server for p in shards}) == 3
    assert [p.unit for p in shards] == [1, 1 + SHARD_UNITS, 1 + 2 * SHARD_UNITS]
    assert [p.parameters['layer_args'] for p in shards] == ['100', '100', '100']
    assert all(p.parameters['layer_units'] == 300 for p in shards)
    assert 'shard 2/3' in plan.table()


def test_each_shard_needs_about_its_share_of_the_memory(layer_types):
    wide = [[-1, 'FFDense', [1000]], [-1, 'FFDense', [20000]], [-1, 'FFDense', [100]]]
    whole = placement_bytes(build_plan(model(layer_types, wide), SERVERS).placements[1])
    split = build_plan(model(layer_types, wide), SERVERS, shards={1: 3}).placements[1:4]
    assert [p.out_shape for p in split] == [(6667,), (6666,), (6667,)]
    assert all(placement_bytes(p) < 0.4 * whole for p in split)


def test_shards_exchange_partials_and_the_next_layer_joins_them_in_order(layer_types):
    plan = build_plan(model(layer_types, DENSE), SERVERS, shards={1: 3})
    first = StageWiring.from_parameters(parameters(plan.placements[1]))
    peers = [b.topic for b in first.inputs if b.port == 'partials']
    assert peers == ['/split/layer_1_1of3/partials_out', '/split/layer_1_2of3/partials_out']
    assert first.output_topic('partials') == '/split/layer_1_0of3/partials_out'
    reader = StageWiring.from_parameters(parameters(plan.placements[4]))
    assert [b.topic for b in reader.inputs if b.port == 'train'] == [
        f'/split/layer_1_{k}of3/train_out' for k in range(3)]
    assert reader.input_shapes == ((100,), (100,), (100,)) and reader.concat_dim == 1
    assert reader.in_shape == (300,)


def test_a_split_conv_layer_passes_its_pooled_channels_on(layer_types):
    conv = [[-1, 'FFConv2d', [20, 3, 1, 1]], [-1, 'MaxPool2d', [2]],
            [-1, 'FFConv2d', [30, 3, 1, 1]], [-1, 'MaxPool2d', [2]], [-1, 'FFDense', [50]]]
    plan = build_plan(model(layer_types, conv, goodness_layers=[4], input_shape=[1, 28, 28]),
                      SERVERS[:2], shards={2: 2})
    assert [p.out_shape for p in plan.placements[1:3]] == [(15, 7, 7), (15, 7, 7)]
    reader = StageWiring.from_parameters(parameters(plan.placements[3]))
    assert reader.input_shapes == ((15, 7, 7), (15, 7, 7))  # joined: 30x7x7, then Flatten


@pytest.mark.parametrize('shards, message', [
    ({5: 2}, 'no trainable row'),
    ({1: 4}, 'need 4 server containers'),
    ({1: 1}, 'a split needs 2'),
    ({2: 2}, 'feeds no other layer'),
])
def test_splits_that_cannot_run_are_refused_before_anything_starts(layer_types, shards, message):
    with pytest.raises(ConfigError, match=message) as info:
        build_plan(model(layer_types, DENSE), SERVERS, shards=shards)
    assert '\n' not in str(info.value)


def test_reporting_pinned_and_batchnorm_layers_are_not_split(layer_types):
    with pytest.raises(ConfigError, match='reports goodness'):
        build_plan(model(layer_types, DENSE, goodness_layers=[1, 2]), SERVERS, shards={1: 2})
    with pytest.raises(ConfigError, match='cannot be pinned'):
        build_plan(model(layer_types, DENSE), SERVERS, 'pinned', {1: 'server_1'},
                   shards={1: 2})
    batch_norm = [[-1, 'FFDense', [40]], [-1, 'FFDense', [30, {'input_norm': 'batch'}]],
                  [-1, 'FFDense', [10]]]
    with pytest.raises(ConfigError, match='input_norm'):
        build_plan(model(layer_types, batch_norm), SERVERS, shards={1: 2})


def test_the_shards_parameter_is_parsed_with_one_line_errors():
    assert parse_shards(['1:4', '3:2']) == {1: 4, 3: 2}
    for bad in ('1', 'a:2', '1:x', '-1:2'):
        with pytest.raises(ConfigError, match='expected'):
            parse_shards([bad])
    with pytest.raises(ConfigError, match='split twice'):
        parse_shards(['1:2', '1:3'])


def test_a_plan_that_does_not_fit_the_devices_names_what_a_shard_needs(layer_types):
    wide = [[-1, 'FFDense', [400]], [-1, 'FFDense', [20000]], [-1, 'FFDense', [100]]]
    whole = build_plan(model(layer_types, wide), SERVERS)
    three = build_plan(model(layer_types, wide), SERVERS, shards={1: 3})
    room = {server: sum(placement_bytes(p) for p in ps)  # three shards fit, two do not
            for server, ps in three.by_server().items()}
    with pytest.raises(NoRoom, match=r'layer 1 alone needs about .*parameter, e\.g\. "1:2"'):
        check_rooms(whole, room)
    split = build_plan(model(layer_types, wide), SERVERS, shards={1: 2})
    with pytest.raises(NoRoom, match=r'shard \d of 2 of layer 1 alone needs about .*"1:3"'):
        check_rooms(split, room)
    check_rooms(three, room)
    check_rooms(whole, dict.fromkeys(SERVERS))  # unknown rooms: not checked here


def test_a_split_model_sends_each_batch_alone(layer_types):
    settings = {'bundle': 0}
    assert bundle_setting(build_plan(model(layer_types, DENSE), SERVERS), settings) == 0
    assert bundle_setting(build_plan(model(layer_types, DENSE), SERVERS, shards={1: 2}),
                          settings) == 1
