"""Distribution plan: placement policies, their errors, topic wiring and layer parameters."""
from pathlib import Path

from dff_lifecycle.core.config import ConfigError, load_layer_config, load_model_config
from dff_lifecycle.master.plan import (assign_servers, build_plan, check_placement, PARAMETERS,
                                       parse_pins)
from dff_lifecycle.nodes.parameters import LAYER_PARAMETERS
import pytest

REPO = Path(__file__).resolve().parents[2]
PARAMS = REPO / 'params'
TINY = REPO / 'test' / 'fixtures' / 'mnist_tiny.yaml'
# Filled by the server container (its own settings) or by the master's extra_parameters.
SERVER_FILLED = {'weight_dir', 'load_weights', 'save_every_batches', 'save_every_s', 'server',
                 'resend_cache_mib',
                 'device', 'chunk_elements',
                 'status_period_s'}  # left to the server, the master's extras or defaults


@pytest.fixture(scope='module')
def layer_types():
    return load_layer_config(PARAMS / 'layers.yaml')


def make_model(layer_types, widths=(8, 8, 8), **changes):
    """Build a small supervised MNIST model, one chained FFDense row per width."""
    data = {'name': 'unit', 'dataset': 'mnist', 'supervised': True,
            'training': {'seed': 2},
            'layers': [[-1, 'FFDense', [w]] for w in widths], **changes}
    return load_model_config(data, layer_types)


def servers(n):
    return [f'server_{i}' for i in range(1, n + 1)]


def raises_config_error(key, call, *args, **kwargs) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        call(*args, **kwargs)
    assert info.value.key == key
    assert info.value.source == PARAMETERS
    return info.value


# ------------------------------------------------------------------------ placement policies

@pytest.mark.parametrize('num_layers, num_servers, expected', [
    (2, 1, ['server_1', 'server_1']),
    (4, 2, ['server_1', 'server_1', 'server_2', 'server_2']),
    (3, 2, ['server_1', 'server_1', 'server_2']),            # uneven: ceil-sized blocks
    (5, 3, ['server_1', 'server_1', 'server_2', 'server_2', 'server_3']),
    (2, 4, ['server_1', 'server_2']),                        # more servers than layers
    (1, 3, ['server_1']),
])
def test_contiguous_blocks(num_layers, num_servers, expected):
    assert assign_servers(num_layers, servers(num_servers), 'contiguous') == expected


def test_contiguous_blocks_are_ordered_and_in_range_for_many_shapes():
    for num_layers in range(1, 12):
        for num_servers in range(1, 8):
            names = servers(num_servers)
            chosen = assign_servers(num_layers, names, 'contiguous')
            assert len(chosen) == num_layers
            positions = [names.index(s) for s in chosen]
            assert positions == sorted(positions) and positions[0] == 0
            assert all(b - a in (0, 1) for a, b in zip(positions, positions[1:]))


def test_round_robin():
    assert assign_servers(5, servers(2), 'round_robin') == [
        'server_1', 'server_2', 'server_1', 'server_2', 'server_1']
    assert assign_servers(2, servers(3), 'round_robin') == ['server_1', 'server_2']


def test_pinned_overrides_and_unpinned_layers_fall_back_to_contiguous():
    # contiguous would be [s1, s1, s2]
    assert assign_servers(3, servers(2), 'pinned', {0: 'server_2'}) == [
        'server_2', 'server_1', 'server_2']
    assert assign_servers(3, servers(2), 'pinned', {2: 'server_1', 1: 'server_2'}) == [
        'server_1', 'server_2', 'server_1']


def test_pins_also_override_the_other_policies():
    assert assign_servers(3, servers(3), 'round_robin', {1: 'server_3'}) == [
        'server_1', 'server_3', 'server_3']
    assert assign_servers(2, servers(2), 'contiguous', {1: 'server_1'}) == [
        'server_1', 'server_1']


def test_servers_not_in_the_default_order_are_used_as_given():
    assert assign_servers(3, ['b', 'a'], 'contiguous') == ['b', 'b', 'a']


# ------------------------------------------------------------------------ placement errors

def test_unknown_placement():
    raises_config_error('placement', assign_servers, 2, servers(1), 'random')


def test_pinned_without_pins():
    raises_config_error('pins', assign_servers, 2, servers(1), 'pinned')
    raises_config_error('pins', assign_servers, 2, servers(1), 'pinned', {})


@pytest.mark.parametrize('index', [2, 5, -1])
def test_pin_index_out_of_range(index):
    raises_config_error('pins', assign_servers, 2, servers(2), 'pinned', {index: 'server_1'})


def test_pin_to_unknown_server():
    raises_config_error('pins', assign_servers, 2, servers(2), 'pinned', {0: 'server_9'})


def test_no_servers():
    raises_config_error('servers', assign_servers, 2, [], 'contiguous')


def test_policy_is_checked_before_servers():
    raises_config_error('placement', assign_servers, 2, [], 'random')


def test_check_placement_alone_before_servers_are_known():
    check_placement(3, 'contiguous', {})
    check_placement(3, 'round_robin', {})
    check_placement(3, 'pinned', {2: 'server_not_known_yet'})  # servers are checked later
    raises_config_error('placement', check_placement, 3, 'spread', {})
    raises_config_error('pins', check_placement, 3, 'pinned', {})
    raises_config_error('pins', check_placement, 3, 'contiguous', {3: 'server_1'})


# ------------------------------------------------------------------------ parse_pins

def test_parse_pins():
    assert parse_pins([]) == {}
    assert parse_pins(['0:server_1', ' 1 : server_2 ']) == {0: 'server_1', 1: 'server_2'}


@pytest.mark.parametrize('item', ['x', '0', ':s', 'a:s', '0:', '0: ', '-1:s', '1.5:s', '',
                                  '\u00b2:s'])
def test_parse_pins_malformed(item):
    raises_config_error('pins', parse_pins, [item])


def test_parse_pins_layer_pinned_twice():
    raises_config_error('pins', parse_pins, ['0:server_1', '0:server_2'])
    raises_config_error('pins', parse_pins, ['1:server_1', '01:server_1'])


# ------------------------------------------------------------------------ build_plan

def test_topics_of_a_chain(layer_types):
    model = make_model(layer_types)
    plan = build_plan(model, servers(2))
    assert plan.model == 'unit'
    t = [p.topics for p in plan.placements]
    assert (t[0].train_in, t[0].infer_in) == ('/unit/input/train', '/unit/input/infer')
    for i in (1, 2):
        assert t[i].train_in == t[i - 1].train_out == f'/unit/layer_{i - 1}/train_out'
        assert t[i].infer_in == t[i - 1].infer_out == f'/unit/layer_{i - 1}/infer_out'
    assert (t[2].train_out, t[2].infer_out) == ('', '')  # the leaf feeds nobody
    for i, topics in enumerate(t):  # only layers whose goodness the master reads report
        assert topics.result == ('/unit/results' if i in model.goodness_layers else '')
        assert topics.status == f'/unit/layer_{i}/status'


def test_names_of_placements(layer_types):
    plan = build_plan(make_model(layer_types), servers(2))
    for i, p in enumerate(plan.placements):
        assert p.layer.index == i
        assert (p.namespace, p.node_name, p.full_name) == ('/unit', f'layer_{i}',
                                                           f'/unit/layer_{i}')
    assert [p.server for p in plan.placements] == ['server_1', 'server_1', 'server_2']


def test_topics_of_a_skip_connection(layer_types):
    model = make_model(layer_types, layers=[[-1, 'FFDense', [8]], [-1, 'FFDense', [6]],
                                            [0, 'FFDense', [4]]])
    t = [p.topics for p in build_plan(model, servers(1)).placements]
    assert t[2].train_in == t[0].train_out == '/unit/layer_0/train_out'
    assert t[2].infer_in == t[0].infer_out == '/unit/layer_0/infer_out'
    assert (t[1].train_out, t[1].infer_out) == ('', '')  # layer 1 is a leaf too
    assert (t[2].train_out, t[2].infer_out) == ('', '')
    assert build_plan(model, servers(1)).placements[2].parameters['in_features'] == 8


@pytest.mark.parametrize('config', sorted((PARAMS / 'models').glob('*.yaml')) + [TINY],
                         ids=lambda p: p.stem)
def test_layer_parameters_fill_the_layer_table_with_its_types(layer_types, config):
    model = load_model_config(config, layer_types)
    for p in build_plan(model, servers(2)).placements:
        assert set(p.parameters) == set(LAYER_PARAMETERS) - SERVER_FILLED
        for name, value in p.parameters.items():
            assert type(value) is LAYER_PARAMETERS[name].type, name


def test_layer_parameter_values(layer_types):
    model = make_model(layer_types, widths=(8, 4), goodness_layers=[1],
                       layer_defaults={'lr': 1, 'threshold': 3},
                       layers=[[-1, 'FFDense', [8, {'symba_alpha': 2}]], [-1, 'FFDense', [4]]])
    first, second = (p.parameters for p in build_plan(model, servers(1)).placements)
    assert first['lr'] == 1.0 and type(first['lr']) is float  # an int lr stays a double
    assert type(first['threshold']) is float and type(first['symba_alpha']) is float
    assert (first['symba_alpha'], second['symba_alpha']) == (2.0, 4.0)
    assert (first['model'], first['layer_index'], first['layer_type']) == ('unit', 0, 'FFDense')
    assert (first['in_features'], first['out_features']) == (784, 8)
    assert (second['in_features'], second['out_features']) == (8, 4)
    assert (first['seed'], second['seed']) == (2000, 2001)
    assert first['steps_per_batch'] == 1  # minibatch
    assert (first['report_goodness'], second['report_goodness']) == (False, True)
    assert not first['report_features'] and not second['report_features']  # supervised
    assert 'train /unit/layer_0/train_out dff_msgs/msg/TensorChunk' in first['outputs']
    assert not any(entry.startswith('train ') for entry in second['outputs'])  # the leaf
    assert first['inputs'] == ['train /unit/input/train dff_msgs/msg/TensorChunk',
                               'infer /unit/input/infer dff_msgs/msg/TensorChunk']


def test_full_batch_and_unsupervised_parameters(layer_types):
    paper = load_model_config(PARAMS / 'models' / 'mnist_paper.yaml', layer_types)
    for p in build_plan(paper, servers(1)).placements:
        assert p.parameters['steps_per_batch'] == paper.training.steps_per_layer > 1
    cifar = load_model_config(PARAMS / 'models' / 'cifar10_ff.yaml', layer_types)
    placements = build_plan(cifar, servers(1)).placements
    assert placements[0].parameters['in_features'] == 3 * 32 * 32  # images are flattened
    for p in placements:
        assert p.parameters['report_features'] is True
        assert p.parameters['report_goodness'] is False


def test_extra_parameters_are_coerced_to_the_table_types(layer_types):
    extra = {'chunk_elements': 1024, 'save_every_batches': 5, 'load_weights': False,
             'lr': 1, 'weight_dir': 7}
    plan = build_plan(make_model(layer_types), servers(1), extra_parameters=extra)
    for p in plan.placements:
        params = p.parameters
        assert (params['chunk_elements'], params['save_every_batches']) == (1024, 5)
        assert params['load_weights'] is False
        assert params['lr'] == 1.0 and type(params['lr']) is float
        assert params['weight_dir'] == '7'


def test_unknown_extra_parameter(layer_types):
    raises_config_error('not_a_parameter', build_plan, make_model(layer_types), servers(1),
                        extra_parameters={'not_a_parameter': 1})


def test_extra_parameter_of_the_wrong_type(layer_types):
    raises_config_error('load_weights', build_plan, make_model(layer_types), servers(1),
                        extra_parameters={'load_weights': 'yes'})


def test_build_plan_placement_errors(layer_types):
    model = make_model(layer_types)
    raises_config_error('placement', build_plan, model, servers(1), 'spread')
    raises_config_error('pins', build_plan, model, servers(1), 'pinned')
    raises_config_error('pins', build_plan, model, servers(1), 'pinned', {3: 'server_1'})
    raises_config_error('pins', build_plan, model, servers(1), 'pinned', {0: 'server_2'})
    raises_config_error('servers', build_plan, model, [])


def test_build_plan_with_pins(layer_types):
    plan = build_plan(make_model(layer_types), servers(2), 'pinned', {2: 'server_1'})
    assert [p.server for p in plan.placements] == ['server_1'] * 3


# ------------------------------------------------------------------------ by_server, table

def test_by_server_groups_in_order_of_first_use(layer_types):
    plan = build_plan(make_model(layer_types), ['server_2', 'server_1'])
    grouped = plan.by_server()
    assert list(grouped) == ['server_2', 'server_1']
    assert [p.layer.index for p in grouped['server_2']] == [0, 1]
    assert [p.layer.index for p in grouped['server_1']] == [2]
    rr = build_plan(make_model(layer_types), servers(2), 'round_robin').by_server()
    assert {s: [p.layer.index for p in ps] for s, ps in rr.items()} == {
        'server_1': [0, 2], 'server_2': [1]}


def test_by_server_leaves_out_unused_servers(layer_types):
    plan = build_plan(make_model(layer_types, widths=(8,)), servers(3))
    assert list(plan.by_server()) == ['server_1']


def test_table_has_one_row_per_layer(layer_types):
    plan = build_plan(make_model(layer_types), servers(2))
    lines = plan.table().splitlines()
    assert len(lines) == 2 + len(plan.placements)  # header, rule, rows
    assert set(lines[1].replace(' ', '')) == {'-'}
    for p, line in zip(plan.placements, lines[2:]):
        cells = line.split()
        assert cells[0] == str(p.layer.index)
        assert p.server in cells and p.full_name in cells and p.topics.train_in in cells
    assert lines[-1].split()[-1] == '-'  # the leaf has no output topic


def test_after_a_move_only_the_servers_holding_layers_are_saved(layer_types):
    """A lost server that returns holds none of the moved layers: nothing of it is saved."""
    from dff_lifecycle.master.plan import move_layers
    from dff_lifecycle.master.run import holders
    plan = build_plan(make_model(layer_types), servers(2))
    assert holders(plan, servers(2)) == servers(2)
    moved, _ = move_layers(plan, {'server_2'}, ['server_1'])
    assert holders(moved, ['server_1', 'server_2']) == ['server_1']  # server_2 beats again
    assert holders(moved, ['server_2']) == []
