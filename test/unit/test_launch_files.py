"""launch/dff.launch.py and dff_lifecycle.deploy.launch_description, against stand-ins.

The stand-ins replace the launch and launch_ros packages, so the wiring is checked fast and
wherever the real ones are missing: the Node actions come from the same Deployment as
dff_launch's processes. The real `ros2 launch` runs the file in test/ros2_tools.
"""
from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
import sys
import types

from dff_lifecycle.deploy.deployment import find_deployment, load_deployment
import pytest

REPO = Path(__file__).resolve().parents[2]


class Action:

    def __init__(self, *args, **kwargs) -> None:
        self.args, self.kwargs = args, kwargs


class LaunchConfiguration(Action):

    def perform(self, context: dict) -> str:
        return context[self.args[0]]


STUBS = {
    'launch': {'LaunchDescription': Action},
    'launch.actions': {n: type(n, (Action,), {}) for n in (
        'DeclareLaunchArgument', 'OpaqueFunction', 'EmitEvent', 'LogInfo',
        'RegisterEventHandler')},
    'launch.event_handlers': {'OnProcessExit': type('OnProcessExit', (Action,), {})},
    'launch.events': {'Shutdown': type('Shutdown', (Action,), {})},
    'launch.substitutions': {'LaunchConfiguration': LaunchConfiguration},
    'launch_ros': {},
    'launch_ros.actions': {'Node': type('Node', (Action,), {})},
}


@pytest.fixture
def fake_launch(monkeypatch):
    for name, members in STUBS.items():
        module = types.ModuleType(name)
        vars(module).update(members)
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.delitem(sys.modules, 'dff_lifecycle.deploy.launch_description', raising=False)
    yield importlib.import_module('dff_lifecycle.deploy.launch_description')
    sys.modules.pop('dff_lifecycle.deploy.launch_description', None)  # built on the stand-ins


def kinds(actions) -> list[str]:
    return [type(a).__name__ for a in actions]


def test_nodes_match_the_deployment_processes(fake_launch):
    deployment = load_deployment(find_deployment('mnist_2servers'))
    actions = fake_launch.deployment_actions(deployment)
    assert kinds(actions) == ['LogInfo'] * 5 + ['Node', 'Node', 'Node', 'RegisterEventHandler']
    nodes = actions[5:8]
    for node, spec in zip(nodes, deployment.processes()):
        assert node.kwargs['package'] == 'dff_lifecycle'
        assert node.kwargs['executable'] == spec.executable
        assert node.kwargs['name'] == spec.name and node.kwargs['namespace'] == '/dff'
        assert node.kwargs['parameters'] == [str(deployment.path), dict(spec.overrides)]
    assert nodes[0].kwargs['parameters'][1] == {'server_name': 'server_1',
                                                'weight_dir': str(Path.cwd() / 'weights/server_1')}
    master = nodes[2]
    handler = actions[8].args[0]
    assert type(handler).__name__ == 'OnProcessExit' and handler.kwargs['target_action'] is master
    assert kinds(handler.kwargs['on_exit']) == ['LogInfo', 'EmitEvent']


def test_launch_file_reads_its_arguments(fake_launch):
    path = REPO / 'launch' / 'dff.launch.py'
    spec = importlib.util.spec_from_file_location('dff_launch_file', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    declared, opaque = description.args[0][:2], description.args[0][2]
    assert [d.args[0] for d in declared] == ['deployment', 'servers']
    actions = opaque.kwargs['function']({'deployment': 'mnist_4layers_4servers', 'servers': '0'})
    assert kinds(actions).count('Node') == 5
    actions = opaque.kwargs['function']({'deployment': 'mnist_4layers_4servers', 'servers': '2'})
    assert [a.kwargs['name'] for a in actions if type(a).__name__ == 'Node'] == [
        'server_1', 'server_2', 'master']


@pytest.mark.parametrize('path', sorted((REPO / 'test' / 'launch').glob('test_*_launch.py')),
                         ids=lambda p: p.name)
def test_launch_testing_twins_compile(path):
    compile(path.read_text(encoding='utf-8'), str(path), 'exec')
