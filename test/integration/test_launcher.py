"""dff_launch running a tiny deployment: two server containers and the master."""
from __future__ import annotations

import os
import re
import signal

from dff_lifecycle.testing.waiting import wait_until
import pytest
from ros_env import isolated_ros_env  # noqa: F401 - fixture
import scenarios

pytestmark = pytest.mark.integration

WEIGHTS = ['weights/server_1/mnist_tiny/layer_0.pt', 'weights/server_2/mnist_tiny/layer_1.pt']


def test_deployment_trains_end_to_end_and_exits_0(ros_domain, tmp_path):
    env = isolated_ros_env(ros_domain)
    deployment = scenarios.write_deployment(tmp_path)
    launcher = scenarios.start_launcher(env, deployment)
    try:
        code = launcher.wait(150)
    finally:
        scenarios.stop_launcher(launcher, deployment)
    output = launcher.output
    assert code == 0, output
    assert re.search(r'^\[master\] test accuracy: \d\.\d{4}$', output, re.M), output
    assert '[master] training done' in output
    scenarios.check_ordered_run(output)
    assert scenarios.weight_files(tmp_path) == WEIGHTS
    assert not scenarios.running_children(launcher, deployment)


def test_ctrl_c_stops_master_then_servers_and_keeps_weights(ros_domain, tmp_path):
    env = isolated_ros_env(ros_domain)
    deployment = scenarios.write_deployment(tmp_path, epochs=500)  # far longer than the test
    launcher = scenarios.start_launcher(env, deployment)
    try:
        launcher.wait_for('[master]   activate   /mnist_tiny/layer_1: ok', 120)
        wait_until(lambda: scenarios.weight_files(tmp_path), 120,
                   'a first checkpoint (in the middle of training)',
                   detail=lambda: launcher.output)
        os.killpg(launcher.popen.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        code = launcher.wait(90)
    finally:
        scenarios.stop_launcher(launcher, deployment)
    output = launcher.output
    assert code == 130, output  # the master's: interrupted
    lines = output.splitlines()

    def index(text: str) -> int:
        return next(i for i, line in enumerate(lines) if text in line)

    assert (index('[dff_launch] SIGINT: stopping the master, then the servers')
            < index('[dff_launch] master: sending SIGINT')
            < index('[master] master: interrupted')
            < index('[dff_launch] master: exited with code 130')
            < index('[dff_launch] server_2: sending SIGINT')
            < index('[dff_launch] server_1: finished cleanly')), output
    assert 'SIGTERM' not in output and 'SIGKILL' not in output, output
    assert scenarios.weight_files(tmp_path) == WEIGHTS
    assert not scenarios.running_children(launcher, deployment)
