"""A deployment started by launch_ros trains the tiny model and everything exits cleanly.

Twin of test/integration/test_launcher.py (dff_launch); the Node actions come
from the same deployment description (dff_lifecycle.deploy.launch_description).
"""
import os
from pathlib import Path
import tempfile
import unittest

from dff_lifecycle.deploy.deployment import load_deployment
from dff_lifecycle.deploy.launch_description import deployment_nodes
from launch import LaunchDescription
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
    os.environ.update(env)  # for the test's own node
    folder = Path(tempfile.mkdtemp(prefix='dff_deployment_'))
    deployment = load_deployment(scenarios.write_deployment(folder))
    servers, master = deployment_nodes(deployment, additional_env=env)
    return (LaunchDescription([*servers, master, launch_testing.actions.ReadyToTest()]),
            {'master': master, 'folder': folder})


class TestDeployment(unittest.TestCase):

    def test_every_layer_trains_every_batch_and_the_master_reports(self, proc_info, proc_output,
                                                                   master):
        with ros_client('_dff_launch_test') as ros:
            watch = scenarios.StatusWatch(ros.node)
            proc_output.assertWaitFor('test accuracy:', process=master, timeout=180,
                                      stream='stdout')
            total = scenarios.TINY_BATCHES_PER_EPOCH
            scenarios.wait_until(lambda: set(watch.snapshot().values()) == {total}, 10,
                                 f'{total} batches on every layer')
        proc_info.assertWaitForShutdown(process=master, timeout=60)

    def test_weights_are_saved_where_each_server_keeps_them(self, proc_info, master, folder):
        proc_info.assertWaitForShutdown(process=master, timeout=240)
        self.assertEqual(scenarios.weight_files(folder), [
            'weights/server_1/mnist_tiny/layer_0.pt', 'weights/server_2/mnist_tiny/layer_1.pt'])


@launch_testing.post_shutdown_test()
class TestExitCodes(unittest.TestCase):

    def test_master_and_servers_exit_cleanly(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
