"""Parameter tables: Param, checks, coercion, the node tables, declare/read on a node."""
import dataclasses
import typing

from dff_lifecycle.common.parameter_table import coerce, Param, type_problem, types_of
from dff_lifecycle.core.hyperparams import FFHyperParams, field_names
from dff_lifecycle.master.parameters import COMMANDS, MASTER_PARAMETERS, PLACEMENTS
from dff_lifecycle.nodes.parameters import (CHUNK_ELEMENTS, HYPERPARAMETERS, INHERITED,
                                            LAYER_PARAMETERS, SERVER_PARAMETERS)
from dff_lifecycle.ros.parameters import (declare_all, descriptor, MissingParameterError,
                                          ParameterTypeError, read_all)
from dff_lifecycle.ros.process import ros_process
from layer_ports import ports
import pytest
from rcl_interfaces.msg import ParameterType
from rclpy.exceptions import InvalidParameterValueException
from rclpy.node import Node
from rclpy.parameter import Parameter

TABLES = {'layer': LAYER_PARAMETERS, 'server': SERVER_PARAMETERS, 'master': MASTER_PARAMETERS}
ROS_TYPES = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
             float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING,
             list: ParameterType.PARAMETER_STRING_ARRAY}
# What a layer node needs from its creator (the master's plan).
LAYER_REQUIRED = {'model': 'unit', 'layer_index': 1, 'in_features': 12, 'out_features': 8,
                  **ports('/unit/layer_0/train_out', '/unit/layer_0/infer_out',
                          result='/unit/results', status='/unit/layer_1/status')}
MASTER_REQUIRED = {'model_config': 'm.yaml', 'layer_config': 'layers.yaml'}


@pytest.fixture
def make_node(ros_domain):
    """Plain nodes in a private context, given parameter overrides; no spinning needed."""
    nodes = []
    with ros_process([], own_context=True) as ros:
        def make(overrides=None) -> Node:
            node = Node(f'param_test_{len(nodes)}', context=ros.context,
                        parameter_overrides=[Parameter(k, value=v)
                                             for k, v in (overrides or {}).items()])
            nodes.append(node)
            return node

        yield make
        for node in nodes:
            node.destroy_node()


# ------------------------------------------------------------------------ Param, checks

def test_param():
    assert Param(int, None, 'needed').required
    assert not Param(str, '', 'optional').required
    assert not Param(bool, False, 'a false default is a default').required
    with pytest.raises(TypeError):
        Param(dict, {}, 'no ROS type')
    with pytest.raises(TypeError):
        Param(tuple, (), 'no ROS type')


def test_types_of():
    table = {'a': Param(int, 1, ''), 'b': Param(float, None, ''), 'c': Param(list, [''], '')}
    assert types_of(table) == {'a': int, 'b': float, 'c': list}
    assert types_of({}) == {}
    assert set(types_of(LAYER_PARAMETERS)) == set(LAYER_PARAMETERS)


@pytest.mark.parametrize('value, expected', [
    (True, bool), (False, bool), (0, int), (-3, int), (1.5, float), (0.0, float),
    ('', str), ('x', str), ([''], list), (['a', 'b'], list),
])
def test_type_problem_accepts(value, expected):
    assert type_problem(value, expected) == ''


@pytest.mark.parametrize('value, expected', [
    (1, bool), ('true', bool), (None, bool),
    (True, int), (1.0, int), ('1', int), (None, int),
    (1, float), (True, float), ('1.0', float),
    (1, str), (None, str),
    ([], list), (['a', 1], list), ('a', list), (('a',), list),
])
def test_type_problem_refuses(value, expected):
    assert type_problem(value, expected)


def test_coerce():
    assert coerce(1, float) == 1.0 and type(coerce(1, float)) is float
    assert coerce(2.5, float) == 2.5
    assert coerce(3, str) == '3'
    assert coerce(True, str) == 'True'
    assert coerce('a', list) == ['a']
    assert coerce(['a', 'b'], list) == ['a', 'b']
    assert coerce(7, int) == 7 and type(coerce(7, int)) is int
    assert coerce(False, bool) is False


@pytest.mark.parametrize('value, expected', [
    (True, float), (1.5, int), (True, int), ('1', int), (None, str), (1, bool), ('yes', bool),
    ([], list), ([1], list), (None, float),
])
def test_coerce_refuses(value, expected):
    with pytest.raises(ValueError):
        coerce(value, expected)


# ------------------------------------------------------------------------ the tables

def test_every_hyperparameter_is_a_layer_parameter():
    hints = typing.get_type_hints(FFHyperParams)
    assert tuple(HYPERPARAMETERS) == field_names()
    for f in dataclasses.fields(FFHyperParams):
        spec = LAYER_PARAMETERS[f.name]
        assert spec is HYPERPARAMETERS[f.name]
        assert spec.type is hints[f.name], f.name
        assert spec.default == f.default and type(spec.default) is spec.type
        assert spec.minimum == f.metadata['minimum']
        assert spec.description == f.metadata['help']


@pytest.mark.parametrize('table', TABLES.values(), ids=TABLES.keys())
def test_defaults_have_the_declared_type_and_range(table):
    for name, spec in table.items():
        if spec.required:
            continue
        assert type_problem(spec.default, spec.type) == '', name
        if spec.minimum is not None:
            assert spec.default >= spec.minimum, name
        if spec.maximum is not None:
            assert spec.default <= spec.maximum, name
        assert spec.description, name


def test_shared_entries_agree():
    for name in INHERITED:
        assert LAYER_PARAMETERS[name].type is SERVER_PARAMETERS[name].type
        assert LAYER_PARAMETERS[name].default == SERVER_PARAMETERS[name].default
    assert LAYER_PARAMETERS['chunk_elements'] is MASTER_PARAMETERS['chunk_elements']
    assert CHUNK_ELEMENTS.type is int and CHUNK_ELEMENTS.minimum == 1
    assert MASTER_PARAMETERS['command'].default in COMMANDS
    assert MASTER_PARAMETERS['placement'].default in PLACEMENTS


def test_required_entries():
    assert {n for n, p in LAYER_PARAMETERS.items() if p.required} == set(LAYER_REQUIRED)
    assert {n for n, p in MASTER_PARAMETERS.items() if p.required} == set(MASTER_REQUIRED)
    assert not any(p.required for p in SERVER_PARAMETERS.values())


# ------------------------------------------------------------------------ descriptor

def test_descriptor_types_and_required_marker():
    for name, spec in LAYER_PARAMETERS.items():
        d = descriptor(name, spec)
        assert d.name == name and d.type == ROS_TYPES[spec.type]
        assert d.description.startswith('(required)') == spec.required, name
        assert spec.description in d.description


def test_descriptor_ranges():
    d = descriptor('n', Param(int, 1, 'count', 1))
    assert [(r.from_value, r.to_value) for r in d.integer_range] == [(1, 2**62)]
    assert not d.floating_point_range
    d = descriptor('n', Param(int, 1, 'count', 0, 10))
    assert [(r.from_value, r.to_value) for r in d.integer_range] == [(0, 10)]
    d = descriptor('n', Param(int, 1, 'count', maximum=10))
    assert [(r.from_value, r.to_value) for r in d.integer_range] == [(-2**62, 10)]
    d = descriptor('x', Param(float, 1.0, 'scale', 0.0, 5.0))
    assert [(r.from_value, r.to_value) for r in d.floating_point_range] == [(0.0, 5.0)]
    assert not d.integer_range
    d = descriptor('x', Param(float, 1.0, 'scale', 0.1))
    assert d.floating_point_range[0].from_value == 0.1
    assert d.floating_point_range[0].to_value >= 1e300
    d = descriptor('s', Param(str, '', 'text'))
    assert not d.integer_range and not d.floating_point_range


@pytest.mark.parametrize('table', TABLES.values(), ids=TABLES.keys())
def test_descriptors_carry_the_minimum_of_every_table_entry(table):
    for name, spec in table.items():
        d = descriptor(name, spec)
        if spec.minimum is None:
            assert not d.integer_range and not d.floating_point_range, name
        elif spec.type is int:
            assert d.integer_range[0].from_value == spec.minimum, name
        else:
            assert spec.type is float, name
            assert d.floating_point_range[0].from_value == spec.minimum, name


# ------------------------------------------------------------------------ declare and read

def test_declare_and_read_the_layer_table(make_node):
    node = make_node(LAYER_REQUIRED)
    declare_all(node, LAYER_PARAMETERS)
    values = read_all(node, LAYER_PARAMETERS)
    assert set(values) == set(LAYER_PARAMETERS)
    for name, spec in LAYER_PARAMETERS.items():
        expected = LAYER_REQUIRED[name] if spec.required else spec.default
        assert values[name] == expected, name
        assert type(values[name]) is spec.type, name
    assert FFHyperParams.from_mapping(values) == FFHyperParams()


def test_hyperparameters_round_trip_through_ros_parameters(make_node):
    hparams = FFHyperParams(threshold=1.5, lr=0.25, goodness='sum', loss='symba',
                            symba_alpha=3.0, optimizer='sgd', weight_decay=0.001)
    node = make_node({**LAYER_REQUIRED, **hparams.to_dict()})
    declare_all(node, LAYER_PARAMETERS)
    assert FFHyperParams.from_mapping(read_all(node, LAYER_PARAMETERS)) == hparams


def test_declared_descriptors(make_node):
    node = make_node(LAYER_REQUIRED)
    declare_all(node, LAYER_PARAMETERS)
    for name, spec in LAYER_PARAMETERS.items():
        d = node.describe_parameter(name)
        assert d.type == ROS_TYPES[spec.type], name
        assert ('(required)' in d.description) == spec.required, name
    assert node.describe_parameter('in_features').integer_range[0].from_value == 1
    assert node.describe_parameter('layer_index').integer_range[0].from_value == 0
    assert node.describe_parameter('lr').floating_point_range[0].from_value == 0.0
    assert not node.describe_parameter('layer_type').integer_range


def test_ranges_are_enforced(make_node):
    node = make_node({**LAYER_REQUIRED, 'in_features': 0})
    with pytest.raises(ParameterTypeError) as err:
        declare_all(node, LAYER_PARAMETERS)
    assert str(err.value) == 'parameter "in_features" must be int >= 1, got 0'
    assert isinstance(err.value.__cause__, InvalidParameterValueException)


def test_a_missing_required_parameter(make_node):
    for missing in ('model', 'in_features'):
        node = make_node({k: v for k, v in LAYER_REQUIRED.items() if k != missing})
        declare_all(node, LAYER_PARAMETERS)
        with pytest.raises(MissingParameterError):
            read_all(node, LAYER_PARAMETERS)


def test_float_defaults_are_declared_as_doubles(make_node):
    table = {'given_as_int': Param(float, 1, 'an int default of a double', 0.0),
             'required': Param(float, None, 'no default')}
    node = make_node({'required': 2.5})
    declare_all(node, table)
    assert node.get_parameter('given_as_int').type_ == Parameter.Type.DOUBLE
    assert read_all(node, table) == {'given_as_int': 1.0, 'required': 2.5}
    assert type(read_all(node, table)['given_as_int']) is float


def test_declare_and_read_the_master_table(make_node):
    node = make_node({**MASTER_REQUIRED, 'pins': ['0:server_1', '1:server_2'],
                      'service_timeout_s': 2.5})
    declare_all(node, MASTER_PARAMETERS)
    values = read_all(node, MASTER_PARAMETERS)
    assert values['pins'] == ['0:server_1', '1:server_2'] and type(values['pins']) is list
    assert values['service_timeout_s'] == 2.5
    for name, spec in MASTER_PARAMETERS.items():
        assert type(values[name]) is spec.type, name
        if spec.type is float:
            assert node.get_parameter(name).type_ == Parameter.Type.DOUBLE


def test_a_list_parameter_keeps_its_default(make_node):
    node = make_node(MASTER_REQUIRED)
    declare_all(node, MASTER_PARAMETERS)
    assert read_all(node, MASTER_PARAMETERS)['pins'] == ['']


def test_server_table_needs_no_overrides(make_node):
    node = make_node()
    declare_all(node, SERVER_PARAMETERS)
    assert read_all(node, SERVER_PARAMETERS) == {n: p.default
                                                 for n, p in SERVER_PARAMETERS.items()}


def _declared_from_command_line(args: list[str], table) -> dict:
    """Declare `table` on a node of a context initialised with `--ros-args` args."""
    import rclpy
    from rclpy.context import Context
    context = Context()
    rclpy.init(args=['x', '--ros-args', *args], context=context)
    try:
        node = Node('typed', context=context)
        try:
            declare_all(node, table)
            return read_all(node, table)
        finally:
            node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


def test_what_ros_users_type_is_accepted():
    """`-p timeout_s:=3` for a float and `-p name:=42` for a string, as ros2 run users type."""
    got = _declared_from_command_line(
        ['-p', 'discovery_timeout_s:=3', '-p', 'model_config:=42', '-p', 'layer_config:=l.yaml',
         '-p', 'pins:=0:server_2'], MASTER_PARAMETERS)
    assert got['discovery_timeout_s'] == 3.0 and type(got['discovery_timeout_s']) is float
    assert got['model_config'] == '42'
    assert got['pins'] == ['0:server_2']


@pytest.mark.parametrize('given,expected', [
    ('window:=0', 'parameter "window" must be int >= 1, got 0'),
    ('window:=many', "parameter \"window\" must be int >= 1, got 'many'"),
    ('progress:=maybe', "parameter \"progress\" must be bool, got 'maybe'"),
])
def test_wrong_types_from_the_command_line_are_one_line_errors(given, expected):
    with pytest.raises(ParameterTypeError) as err:
        _declared_from_command_line(['-p', given], MASTER_PARAMETERS)
    assert str(err.value) == expected
