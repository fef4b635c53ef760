"""A layer deactivated by hand pauses training; activate resumes it (launch_ros twin).

Twin of test/integration/test_manual_pause.py; the scenario itself is
scenarios.pause_and_resume, reading the master's output through proc_output.
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
    os.environ.update(env)
    folder = Path(tempfile.mkdtemp(prefix='dff_pause_'))
    deployment = load_deployment(scenarios.write_deployment(folder, epochs=scenarios.PAUSE_EPOCHS))
    servers, master = deployment_nodes(deployment, additional_env=env)
    return (LaunchDescription([*servers, master, launch_testing.actions.ReadyToTest()]),
            {'master': master, 'env': env, 'folder': folder})


class TestManualPause(unittest.TestCase):

    def test_deactivate_pauses_and_activate_resumes(self, proc_info, proc_output, master, env,
                                                    folder):
        def wait_for_master(text, timeout_s):
            proc_output.assertWaitFor(text, process=master, timeout=timeout_s, stream='stdout')

        with ros_client('_dff_launch_test') as ros:
            scenarios.pause_and_resume(scenarios.dff_lifecycle_tool(env), ros.node,
                                       wait_for_master, folder / 'weights')
        proc_info.assertWaitForShutdown(process=master, timeout=120)


@launch_testing.post_shutdown_test()
class TestExitCodes(unittest.TestCase):

    def test_master_and_servers_exit_cleanly(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
