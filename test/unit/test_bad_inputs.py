"""Bad input at the entry points: one line naming the problem, exit 2, nothing lost.

Each case is one a new user tried; before, each ended in a traceback, or was accepted.
The processes run as users run them (console scripts of the venv); the ROS ones on an
isolated domain.
"""
from __future__ import annotations

import gzip
from pathlib import Path
import subprocess
import sys

from dff_lifecycle.core.config import ConfigError, load_layer_config
from dff_lifecycle.core.data.datasets import DataNotFoundError, load_dataset
import pytest
from ros_env import isolated_ros_env

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TINY = REPO / 'test' / 'fixtures' / 'mnist_tiny.yaml'


def run(tool: str, *args: str, env=None, cwd=None, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / tool), *args], capture_output=True, text=True,
                          env=env, cwd=cwd or REPO, timeout=timeout)


def assert_one_line_error(done: subprocess.CompletedProcess, *words: str) -> None:
    assert done.returncode == 2, done.stdout + done.stderr
    assert 'Traceback' not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if 'error:' in line]
    assert len(lines) == 1, done.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_a_port_of_an_unknown_message_type_is_refused_naming_the_port(tmp_path):
    text = (REPO / 'params' / 'layers.yaml').read_text()
    bad = tmp_path / 'layers.yaml'
    bad.write_text(text.replace('status: dff_msgs/msg/LayerStatus', 'status: dff_msgs/msg/Bogus',
                                1))
    with pytest.raises(ConfigError, match=r'FFDense\.outputs\.status.*LayerStatus.*Bogus'):
        load_layer_config(bad)
    unknown = tmp_path / 'unknown.yaml'
    unknown.write_text(text.replace('infer: dff_msgs/msg/TensorChunk}',
                                    'infer: dff_msgs/msg/TensorChunk, extra: '
                                    'dff_msgs/msg/TensorChunk}', 1))
    with pytest.raises(ConfigError, match="no input port 'extra'"):
        load_layer_config(unknown)


def test_dff_train_refuses_an_out_that_is_a_file_before_training(tmp_path):
    taken = tmp_path / 'results'
    taken.write_text('keep me')
    done = run('dff_train', '--config', str(TINY), '--out', str(taken), '--no-progress')
    assert_one_line_error(done, '--out', str(taken), 'not a folder')
    assert taken.read_text() == 'keep me'


def test_a_model_config_outside_params_uses_the_packaged_layer_config(tmp_path):
    from dff_lifecycle.cli.train import build_parser, load_config
    copy = tmp_path / 'mine.yaml'
    copy.write_text(TINY.read_text())
    assert load_config(build_parser().parse_args(['--config', str(copy)])).name


def truncated_mnist(root: Path) -> Path:
    raw = root / 'MNIST' / 'raw'
    raw.mkdir(parents=True)
    for name in ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte', 't10k-images-idx3-ubyte',
                 't10k-labels-idx1-ubyte'):
        with gzip.open(raw / f'{name}.gz', 'wb') as f:
            f.write(b'\x00\x00\x08\x03' + b'\x00' * 64)
    broken = raw / 'train-images-idx3-ubyte.gz'
    broken.write_bytes(broken.read_bytes()[:20])       # cut short, as a failed copy leaves it
    return broken


def test_a_truncated_mnist_file_is_named_with_what_to_do(tmp_path):
    broken = truncated_mnist(tmp_path)
    with pytest.raises(DataNotFoundError, match=f'{broken}.*truncated or corrupt.*again'):
        load_dataset('mnist', tmp_path)
    done = run('dff_train', '--config', str(TINY), '--data-root', str(tmp_path),
               '--out', str(tmp_path / 'out'), '--no-progress')
    assert_one_line_error(done, str(broken))


def test_a_corrupt_cifar_file_is_named(tmp_path):
    folder = tmp_path / 'cifar10'
    folder.mkdir()
    for name in [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']:
        (folder / f'{name}.npz').write_bytes(b'not a zip')
    with pytest.raises(DataNotFoundError, match='data_batch_1.npz.*corrupt'):
        load_dataset('cifar10', tmp_path, train_limit=10)


@pytest.mark.parametrize('tool, args, words', [
    ('dff_status', ['--wait', '-1'], ['--wait', 'must be > 0']),
    ('dff_status', ['--wait', 'nan'], ['--wait']),
    ('dff_status', ['--wait', '1e400'], ['--wait', 'at most']),
    ('dff_graph', ['--timeout', 'inf'], ['--timeout', 'at most']),
    ('dff_launch', ['params/mnist_2servers.yaml', '--respawn-delay', '1e12'],
     ['--respawn-delay', 'at most']),
    ('dff_graph', ['--wait', '-1'], ['--wait', 'must be >= 0']),
    ('dff_graph', ['--png', '{file}/graph.png'], ['is a file']),
    ('dff_graph', ['--dot', '{dir}'], ['is a folder']),
])
def test_tool_options_are_checked_before_anything_runs(tool, args, words, tmp_path):
    (tmp_path / 'a_file').write_text('')
    args = [a.format(file=tmp_path / 'a_file', dir=tmp_path) for a in args]
    assert_one_line_error(run(tool, *args, env=isolated_ros_env()), *words)


def test_dff_graph_writes_a_png_into_a_folder_it_creates(tmp_path):
    target = tmp_path / 'new' / 'deeper' / 'graph.png'
    done = run('dff_graph', '--wait', '0.1', '--timeout', '0.5', '--png', str(target),
               env=isolated_ros_env())
    assert done.returncode == 0, done.stderr
    assert target.is_file() and target.stat().st_size > 0


@pytest.mark.parametrize('args, words', [
    (['-p', 'weight_dir:={file}'], ['weight_dir', 'not a folder']),
    (['-p', 'weight_dir:={file}/sub'], ['weight_dir', 'cannot create']),
    (['-p', 'weight_dir:='], ['ROS arguments', 'weight_dir']),
])
def test_server_container_refuses_a_weight_dir_it_cannot_use(args, words, tmp_path):
    (tmp_path / 'a_file').write_text('keep me')
    args = [a.format(file=tmp_path / 'a_file') for a in args]
    done = run('server_container', '--ros-args', *args, env=isolated_ros_env(), timeout=60)
    assert_one_line_error(done, *words)
    assert (tmp_path / 'a_file').read_text() == 'keep me'


def test_master_refuses_ros_arguments_it_cannot_parse():
    done = run('master', '--ros-args', '-p', 'servers:=', env=isolated_ros_env())
    assert_one_line_error(done, 'ROS arguments')


def test_master_answers_help_with_its_parameters_and_starts_nothing():
    """`master --help` used to start a master (the console script, as a user runs it)."""
    done = run('master', '--help', env=isolated_ros_env(), timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith('usage: master [--ros-args') and 'model_config' in done.stdout


@pytest.mark.parametrize('module, entry, prog, param', [
    ('dff_lifecycle.nodes.server_container', 'serve', 'server_container', 'weight_dir'),
    ('dff_lifecycle.serving.infer_node', 'serve', 'dff_infer', 'weights'),
    ('dff_lifecycle.serving.learn_node', 'run', 'dff_learn', 'weights'),
    ('dff_lifecycle.serving.image_publisher', 'run', 'dff_image_publisher', 'rate'),
])
def test_every_node_executable_answers_help_before_it_starts_anything(module, entry, prog, param,
                                                                      capsys):
    """In process: the help is printed and 0 returned before rclpy is initialised."""
    import importlib
    import rclpy
    assert getattr(importlib.import_module(module), entry)([prog, '--help']) == 0
    out = capsys.readouterr().out
    assert out.startswith(f'usage: {prog} [--ros-args') and f'  {param} ' in out
    assert not rclpy.ok()  # no context was made


def test_parameters_outside_ros_args_are_refused_saying_where_they_go():
    """`master -p model_config:=x` ran on the defaults: rcl takes only what follows --ros-args."""
    done = run('master', '-p', 'model_config:=x.yaml', env=isolated_ros_env(), timeout=60)
    assert_one_line_error(done, 'unrecognized arguments', '--ros-args -p model_config:=x.yaml')


@pytest.mark.parametrize('tool', ['dff_train', 'dff_launch'])
def test_invalid_yaml_is_one_line_with_its_place(tool, tmp_path):
    bad = tmp_path / 'bad.yaml'
    bad.write_text('not: [yaml\n')
    args = ['--config', str(bad)] if tool == 'dff_train' else [str(bad)]
    assert_one_line_error(run(tool, *args, env=isolated_ros_env()), 'invalid YAML at line 2',
                          "expected ',' or ']'")


def test_dff_launch_says_a_folder_is_a_folder(tmp_path):
    assert_one_line_error(run('dff_launch', str(tmp_path), env=isolated_ros_env()),
                          'is a folder')


def test_a_launch_override_with_broken_yaml_is_one_line():
    assert_one_line_error(run('dff_launch', 'mnist_2servers', '-p', 'epochs:=[1',
                              env=isolated_ros_env()), 'not valid YAML', 'line 1')
