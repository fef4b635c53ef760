"""
The tools give complete answers while a deployment trains at full speed.

mnist_4layers on 4 containers under dff_launch, every core busy. While it trains,
`dff_lifecycle nodes`, `dff_status` and `dff_graph` must each name all four layer
nodes (the issue saw `nodes` list 2 of 4: discovery had not settled).
"""
from __future__ import annotations

from dff_processes import launched_pids, Proc, REPO
import pytest
from ros_env import isolated_ros_env
import scenarios

pytestmark = pytest.mark.integration
LAYERS = [f'/mnist_4layers/layer_{i}' for i in range(4)]


def test_lifecycle_status_and_graph_tools_see_every_layer_while_it_trains(
        ros_domain, tmp_path):
    env = isolated_ros_env(ros_domain)
    deployment = REPO / 'params' / 'mnist_4layers_4servers.yaml'
    launcher = Proc('dff_launch', [
        str(scenarios.BIN / 'dff_launch'), str(deployment), '-p', 'epochs:=50',
        '-p', 'master.progress:=false', '-p', f'master.out_dir:={tmp_path / "run"}',
        '-p', f'servers.weight_dir:={tmp_path / "weights"}', '-p', 'load_weights:=false'], env,
        stacks=launched_pids)
    try:
        launcher.wait_for('bring-up:', 180)
        nodes = scenarios.run_tool(env, 'dff_lifecycle', 'nodes')
        status = scenarios.run_tool(env, 'dff_status', '--model', 'mnist_4layers')
        graph = scenarios.run_tool(env, 'dff_graph')
        assert 'training done' not in launcher.output  # all three ran during training
    finally:
        scenarios.stop_launcher(launcher, deployment)
    for tool in (nodes, status, graph):
        assert tool.returncode == 0, tool.stdout + tool.stderr
        missing = [n for n in LAYERS if n not in tool.stdout]
        assert not missing, f'{tool.args[0]} missed {missing}:\n{tool.stdout}'
    assert status.stdout.count('active') >= 4
