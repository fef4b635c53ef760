"""dff_lifecycle against layers in a server container started by launch_ros.

Twin of test/integration/test_lifecycle_cli.py; the checks are
scenarios.check_lifecycle_cli.
"""
import os
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


def server_container(env, name='server_1'):
    weights = tempfile.mkdtemp(prefix='dff_weights_')
    return Node(package='dff_lifecycle', executable='server_container', name=name,
                namespace='/dff', parameters=[{'server_name': name, 'weight_dir': weights}],
                output='screen', additional_env=env)


@pytest.mark.launch_test
def generate_test_description():
    env = isolated_ros_env()
    os.environ.update(env)
    server = server_container(env)
    return (LaunchDescription([server, launch_testing.actions.ReadyToTest()]),
            {'server': server, 'env': env})


class TestLifecycleCli(unittest.TestCase):

    def test_nodes_get_list_set(self, proc_output, server, env):
        proc_output.assertWaitFor('server container /dff/server_1 up', process=server,
                                  timeout=60, stream='stdout')
        with ros_client('_dff_launch_test') as ros:
            scenarios.create_layers(ros.node)
            scenarios.check_lifecycle_cli(env)


@launch_testing.post_shutdown_test()
class TestExitCodes(unittest.TestCase):

    def test_server_exits_cleanly(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
