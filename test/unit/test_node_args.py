"""The words of a node's command line outside --ros-args: --help, or a one-line refusal."""
from __future__ import annotations

import io

from dff_lifecycle.common.parameter_table import Param
from dff_lifecycle.ros.node_args import check_node_args, NodeUsage
import pytest

USAGE = NodeUsage('dff_node', 'Does one thing.', {
    'model_config': Param(str, None, 'Model config YAML.'),
    'rate': Param(float, 10.0, 'Images per second.', 0.1, 1000.0),
    'topics': Param(list, [], 'Topics to read.'),
})


def check(*argv: str) -> tuple[object, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return check_node_args(list(argv), USAGE, out, err), out.getvalue(), err.getvalue()


@pytest.mark.parametrize('argv', [
    ['/venv/bin/dff_node'],
    ['/venv/bin/dff_node', '--ros-args', '-p', 'rate:=2.0', '-r', '__node:=x'],
    ['--ros-args', '--params-file', 'p.yaml'],  # no program name
    ['dff_node', '--ros-args', '-p', 'rate:=2.0', '--'],
])
def test_ros_arguments_alone_go_on(argv):
    assert check(*argv) == (None, '', '')


@pytest.mark.parametrize('flag', ['-h', '--help'])
def test_help_lists_every_parameter_with_type_default_and_range(flag):
    code, out, err = check('dff_node', flag, '--ros-args', '-p', 'rate:=2.0')
    assert code == 0 and not err
    assert out.startswith('usage: dff_node [--ros-args') and 'Does one thing.' in out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith('  ')}
    assert set(rows) == {'model_config', 'rate', 'topics'}
    assert 'str, required' in rows['model_config']
    assert 'float, default 10.0, 0.1..1000' in rows['rate']
    assert 'string[], default []' in rows['topics']


def test_a_help_inside_ros_args_is_rcls_not_ours():
    assert check('dff_node', '--ros-args', '--help')[0] is None


@pytest.mark.parametrize('argv, shown', [
    (['dff_node', '-p', 'rate:=2.0'], '-p rate:=2.0'),
    (['dff_node', 'extra'], 'extra'),
    (['dff_node', '--ros-args', '-p', 'rate:=2.0', '--', 'after'], 'after'),
])
def test_words_outside_ros_args_are_refused_in_one_line(argv, shown):
    code, out, err = check(*argv)
    assert code == 2 and not out
    assert err.count('\n') == 1 and err.startswith('dff_node: error: unrecognized arguments: ')
    assert shown in err and '--ros-args -p' in err


@pytest.mark.parametrize('argv, name, hint', [
    (['dff_node', '--ros-args', '-p', 'rate_hz:=5'], 'rate_hz', "did you mean 'rate'"),
    (['dff_node', '--ros-args', '--param', 'modelconfig:=x.yaml'], 'modelconfig',
     "did you mean 'model_config'"),
    (['dff_node', '--ros-args', '-p', 'rate:=2', '-p', 'zzz:=1'], 'zzz', '--help'),
])
def test_a_parameter_the_node_does_not_have_is_refused_naming_the_closest(argv, name, hint):
    code, out, err = check(*argv)
    assert code == 2 and not out and err.count('\n') == 1
    assert f"no parameter '{name}'" in err and hint in err


@pytest.mark.parametrize('argv', [
    ['dff_node', '--ros-args', '-p', 'use_sim_time:=true'],
    ['dff_node', '--ros-args', '-p', 'other_node:zzz:=1'],          # for another node
    ['dff_node', '--ros-args', '-p', 'qos_overrides./image.subscription.depth:=3'],
    ['dff_node', '--ros-args', '-r', 'zzz:=other'],                 # a remap, not a parameter
])
def test_built_in_node_scoped_and_remap_arguments_go_on(argv):
    assert check(*argv) == (None, '', '')
