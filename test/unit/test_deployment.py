"""Deployment files: parsing, checks, overrides, path resolution and the process list."""
from __future__ import annotations

from pathlib import Path
import subprocess
import sys

from dff_lifecycle.common.package_files import resolve_config_path
from dff_lifecycle.deploy import deployment as dep
from dff_lifecycle.deploy.deployment import DeploymentError, load_deployment
from dff_lifecycle.master.parameters import MASTER_PARAMETERS
from dff_lifecycle.nodes.parameters import SERVER_PARAMETERS
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SHIPPED = ('mnist_2servers', 'cifar10_3servers', 'mnist_4layers_4servers')


def write(tmp_path: Path, sections: dict, name: str = 'deploy.yaml') -> Path:
    folder = tmp_path / 'params'
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(yaml.safe_dump(sections), encoding='utf-8')
    return path


def master(**params) -> dict:
    base = {'model_config': 'params/models/mnist_ff.yaml', 'layer_config': 'params/layers.yaml',
            'servers': 2}
    return {'/dff/master': {'ros__parameters': {**base, **params}}}


@pytest.mark.parametrize('name', SHIPPED)
def test_shipped_deployments_load_and_name_existing_configs(name):
    d = load_deployment(dep.find_deployment(name))
    assert d.path == REPO / 'params' / f'{name}.yaml'
    assert d.model_config.is_file() and d.layer_config.is_file()
    specs = d.processes()
    assert [s.name for s in specs] == [*d.server_names(), 'master']
    assert d.servers == int(name.split('_')[-1][0])
    assert not d.warnings


def test_processes_mirror_launch_ros_command_lines():
    d = load_deployment(REPO / 'params' / 'mnist_2servers.yaml')
    server, _, master_spec = d.processes()
    assert server.executable == 'server_container'
    assert server.full_name == '/dff/server_1'
    assert server.ready_text == 'server container /dff/server_1 up'
    assert server.ros_arguments() == [
        '--ros-args', '-r', '__node:=server_1', '-r', '__ns:=/dff',
        '--params-file', str(d.path), '-p', 'server_name:=server_1',
        '-p', f'weight_dir:={Path.cwd() / "weights/server_1"}']
    args = master_spec.ros_arguments()
    assert args[:7] == ['--ros-args', '-r', '__node:=master', '-r', '__ns:=/dff',
                        '--params-file', str(d.path)]
    assert f'model_config:={REPO / "params/models/mnist_ff.yaml"}' in args
    assert 'servers:=2' in args


def _parameter_seen(ros_args: list[str], name: str) -> object:
    """Return what a real rclpy node started with ros_args reads for `name`."""
    import rclpy
    from rclpy.node import Node
    context = rclpy.Context()
    rclpy.init(args=ros_args, context=context)
    try:
        node = Node('x', context=context, automatically_declare_parameters_from_overrides=True)
        value = node.get_parameter(name).value
        node.destroy_node()
        return value
    finally:
        rclpy.shutdown(context=context)


def test_overrides_beat_the_deployment_files_own_node_section(tmp_path):
    """`-p servers.weight_dir:=` must win over `/dff/server_1: weight_dir` in the file."""
    d = load_deployment(REPO / 'params' / 'mnist_2servers.yaml',
                        overrides=['servers.weight_dir:=/elsewhere'])
    server = d.processes()[0]
    # rcl's own precedence: the file's node section beats a plain -p.
    assert _parameter_seen(server.ros_arguments(), 'weight_dir') == 'weights/server_1'
    overrides = tmp_path / 'server_1.yaml'
    overrides.write_text(server.overrides_yaml())
    assert _parameter_seen(server.ros_arguments(overrides), 'weight_dir') == '/elsewhere'


def test_relative_configs_resolve_against_the_folder_above_the_file(tmp_path):
    (tmp_path / 'models').mkdir()
    model = tmp_path / 'models' / 'mine.yaml'
    model.write_text('name: x\n')
    path = write(tmp_path, master(model_config='models/mine.yaml'))
    d = load_deployment(path)
    assert d.model_config == model
    # not there: the package's own params/ (repository or install share) is next
    assert d.layer_config == REPO / 'params' / 'layers.yaml'


def test_missing_config_names_where_it_looked(tmp_path):
    path = write(tmp_path, master(model_config='models/nope.yaml'))
    with pytest.raises(DeploymentError, match=r"model_config: 'models/nope.yaml' not found "
                                              r'\(looked in '):
        load_deployment(path)


def test_overrides_go_to_the_processes_that_declare_them(tmp_path):
    server_2 = {'/dff/server_2': {'ros__parameters': {'weight_dir': 'w2'}}}
    path = write(tmp_path, {**master(), **server_2})
    d = load_deployment(path, servers=3, overrides=[
        'epochs:=1', 'device:=cuda', 'servers.torch_threads:=2', 'server_2.weight_dir:=/data/w',
        'service_timeout_s:=5', 'pins:=0:server_2', 'master.out_dir:=runs/x'])
    s1, s2, s3, m = (spec.overrides for spec in d.processes())
    assert s1 == {'server_name': 'server_1', 'device': 'cuda', 'torch_threads': 2,
                  'weight_dir': str(Path.cwd() / 'weights')}  # the server's default
    assert s2 == {'server_name': 'server_2', 'device': 'cuda', 'torch_threads': 2,
                  'weight_dir': '/data/w'}
    assert s3['server_name'] == 'server_3'
    assert m['servers'] == 3 and m['epochs'] == 1 and m['device'] == 'cuda'
    assert m['service_timeout_s'] == 5.0 and isinstance(m['service_timeout_s'], float)
    assert m['pins'] == ['0:server_2'] and m['out_dir'] == str(Path.cwd() / 'runs/x')


def test_servers_override_and_unused_server_sections(tmp_path):
    path = write(tmp_path, {**master(), '/dff/server_2': {'ros__parameters': {'weight_dir': 'w'}}})
    d = load_deployment(path, overrides=['servers:=1'])
    assert d.servers == 1 and [s.name for s in d.processes()] == ['server_1', 'master']
    assert d.warnings and 'server_2 is not used' in d.warnings[0]


@pytest.mark.parametrize('sections, message', [
    ({'/dff/master': {'ros__parameters': {'servers': 2}}}, '`model_config` is required'),
    ({'/**': {'ros__parameters': {'device': 'cpu'}}}, r'no /dff/master section'),
    ({**master(), '/mnist_ff/layer_0': {'ros__parameters': {'lr': 0.1}}},
     "unknown section '/mnist_ff/layer_0'"),
    ({**master(), '/dff/server_*': {'ros__parameters': {}}}, "unknown section '/dff/server_"),
    (master(epoch=3), 'epoch: unknown parameter'),
    (master(service_timeout_s=30), 'is an integer but the parameter is a double; write 30.0'),
    (master(servers='two'), 'servers: expected an integer'),
    (master(pins=[]), 'an empty list has no ROS type'),
    (master(progress='no'), 'progress: expected true or false'),
    ({**master(), '/dff/server_1': {'ros__parameters': {'server_name': 'x'}}},
     'server_name is set by the launcher'),
    ({**master(), '/**': {'ros__parameters': {'server_name': 'x'}}},
     'server_name is set by the launcher'),
    ({'dff/master': master()['/dff/master']}, "unknown section 'dff/master'"),
    ({**master(), '/dff/server_1': {'ros__parameters': {'epochs': 1}}},
     'epochs: unknown parameter'),
    ({**master(), '/dff/server_1': {'weight_dir': 'w'}}, 'expected exactly one key'),
    ({**master(servers=0)}, 'servers must be a positive integer'),
])
def test_malformed_files_say_what_and_where(tmp_path, sections, message):
    path = write(tmp_path, sections)
    with pytest.raises(DeploymentError, match=message) as err:
        load_deployment(path)
    assert str(path) in str(err.value)


def test_unreadable_and_invalid_yaml(tmp_path):
    with pytest.raises(DeploymentError, match='cannot read the file'):
        load_deployment(tmp_path / 'missing.yaml')
    bad = tmp_path / 'bad.yaml'
    bad.write_text('/dff/master: [unclosed\n')
    with pytest.raises(DeploymentError, match='invalid YAML'):
        load_deployment(bad)
    bad.write_text('- a list\n')
    with pytest.raises(DeploymentError, match='expected ROS 2 parameter sections'):
        load_deployment(bad)


@pytest.mark.parametrize('text, message', [
    ('nothing', r'expected \[target.\]name:=value'),
    ('foo:=1', "neither the master nor a server declares 'foo'"),
    ('server_2.epochs:=1', "server_2 has no parameter 'epochs'"),
    ('node.lr:=1', 'target must be master, servers or server_<n>'),
    ('master.epochs:=many', 'expected an integer'),
    ('server_name:=x', 'set by the launcher'),
    ('server_3.device:=cpu', 'override for server_3: the deployment has 2 server'),
])
def test_bad_overrides(tmp_path, text, message):
    with pytest.raises(DeploymentError, match=message):
        load_deployment(write(tmp_path, master()), overrides=[text])


@pytest.mark.parametrize('value', [True, False, 3, 0.5, 1e-05, 'plain', 'two words', '1',
                                   'true', '', "it's", 'a: b', '#x', ['a', 'b:c'], [1, 2]])
def test_ros_value_reads_back_as_the_same_value(value):
    assert yaml.safe_load(dep.ros_value(value) or "''") == value


def test_find_deployment_by_name_or_path_and_listing_on_error():
    path = REPO / 'params' / 'mnist_2servers.yaml'
    assert dep.find_deployment('mnist_2servers') == path
    assert dep.find_deployment('mnist_2servers.yaml') == path
    assert dep.find_deployment(str(path)) == path
    with pytest.raises(DeploymentError, match='shipped: .*mnist_2servers'):
        dep.find_deployment('no_such_deployment')


def test_resolve_config_path_for_the_master(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_config_path('params/layers.yaml') == str(REPO / 'params' / 'layers.yaml')
    (tmp_path / 'params').mkdir()
    (tmp_path / 'params' / 'layers.yaml').write_text('x')
    assert resolve_config_path('params/layers.yaml') == 'params/layers.yaml'  # cwd first
    assert resolve_config_path('nowhere.yaml') == 'nowhere.yaml'
    assert resolve_config_path('/abs/x.yaml') == '/abs/x.yaml'


def test_launcher_reads_the_node_tables_without_torch_or_rclpy():
    code = ('import sys; from dff_lifecycle.deploy import deployment as d; '
            't = d.declared_parameters(); '
            'print(sorted(t), "torch" in sys.modules, "rclpy" in sys.modules)')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["['master',", "'server']", 'False', 'False']


def test_declared_tables_are_the_node_tables():
    tables = dep.declared_parameters()
    assert tables['master'] == {k: p.type for k, p in MASTER_PARAMETERS.items()}
    assert tables['server'] == {k: p.type for k, p in SERVER_PARAMETERS.items()}
