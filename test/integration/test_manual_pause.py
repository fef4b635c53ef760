"""A layer deactivated by hand with dff_lifecycle pauses training; activate resumes it.

The deployment runs under dff_launch; the scenario (test/scenarios.py) watches the
layers' status topics, drives layer_1 with the lifecycle CLI and reads the
master's output.
"""
from __future__ import annotations

import pytest
from ros_client import ros_client
from ros_env import isolated_ros_env  # noqa: F401 - fixture
import scenarios

pytestmark = pytest.mark.integration


def test_deactivate_by_hand_pauses_and_activate_resumes_training(ros_domain, tmp_path):
    env = isolated_ros_env(ros_domain)
    deployment = scenarios.write_deployment(tmp_path, epochs=scenarios.PAUSE_EPOCHS)
    launcher = scenarios.start_launcher(env, deployment)
    try:
        with ros_client('_dff_test_client') as ros:
            scenarios.pause_and_resume(scenarios.dff_lifecycle_tool(env), ros.node,
                                       launcher.wait_for, tmp_path / 'weights')
        code = launcher.wait(120)
    finally:
        scenarios.stop_launcher(launcher, deployment)
    assert code == 0, launcher.output
    assert '[master] test accuracy: ' in launcher.output
