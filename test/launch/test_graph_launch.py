"""dff_graph against a server container started by launch_ros with two active layers.

Twin of test/integration/test_graph.py; the checks are scenarios.check_graph.
"""
import os
from pathlib import Path
import tempfile
import unittest

from launch import LaunchDescription
from launch_ros.actions import Node
import launch_testing
import launch_testing.actions
import launch_testing.asserts
import pytest
from ros_client import ros_client
from ros_env import isolated_ros_env
import scenarios


@pytest.mark.launch_test
def generate_test_description():
    env = isolated_ros_env()
    os.environ.update(env)
    folder = Path(tempfile.mkdtemp(prefix='dff_graph_'))
    server = Node(package='dff_lifecycle', executable='server_container', name='server_1',
                  namespace='/dff', output='screen', additional_env=env,
                  parameters=[{'server_name': 'server_1', 'weight_dir': str(folder / 'weights')}])
    return (LaunchDescription([server, launch_testing.actions.ReadyToTest()]),
            {'server': server, 'env': env, 'folder': folder})


class TestGraph(unittest.TestCase):

    def test_graph_lists_and_draws_the_layers(self, proc_output, server, env, folder):
        proc_output.assertWaitFor('server container /dff/server_1 up', process=server,
                                  timeout=60, stream='stdout')
        with ros_client('_dff_launch_test') as ros:
            scenarios.create_layers(ros.node)
            scenarios.bring_up(ros.node, list(scenarios.TINY_LAYERS))
            scenarios.check_graph(env, folder)


@launch_testing.post_shutdown_test()
class TestExitCodes(unittest.TestCase):

    def test_server_exits_cleanly(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
