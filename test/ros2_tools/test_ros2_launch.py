"""`ros2 launch dff_lifecycle dff.launch.py` runs a deployment; `ros2 lifecycle set` pauses it.

One launch of the tiny model, long enough to pause in the middle (scenarios.PAUSE_EPOCHS,
as the dff_lifecycle pause tests), from a folder of its own, with relative weight_dir /
out_dir in the deployment file:

- while it trains, `ros2 lifecycle set <layer_1> deactivate` holds the pipeline and
  `activate` resumes it, and every batch is still trained exactly once by every layer
  (scenarios.pause_and_resume, as the dff_lifecycle pause tests);
- the launch ends by itself with exit code 0 and the test accuracy, the weights and the
  metrics where the relative paths say: under the folder `ros2 launch` was started in.

The two tests share the launch (the pause test runs first, during the training).
"""
from __future__ import annotations

import os
from pathlib import Path
import re
import signal
import subprocess
from typing import Iterator

from dff_processes import launched_pids, Proc
import pytest
from real_tools import find_tool, shown, SPIN_TIMES_S
from ros_client import ros_client
from ros_env import allocate_domain_id, isolated_ros_env, release_domain_id
import scenarios
import yaml

pytestmark = pytest.mark.integration


class Launch:
    """The running `ros2 launch`, its environment and the folder it was started in."""

    def __init__(self, proc: Proc, env: dict[str, str], folder: Path) -> None:
        self.proc, self.env, self.folder = proc, env, folder


def relative_deployment(folder: Path) -> Path:
    """Write the tiny model's deployment, with relative weight and output folders."""
    path = scenarios.write_deployment(folder, epochs=scenarios.PAUSE_EPOCHS)
    sections = yaml.safe_load(path.read_text(encoding='utf-8'))
    sections['/dff/master']['ros__parameters']['out_dir'] = 'out'
    for i in (1, 2):
        sections[f'/dff/server_{i}']['ros__parameters']['weight_dir'] = f'w/server_{i}'
    path.write_text(yaml.safe_dump(sections, sort_keys=False), encoding='utf-8')
    return path


@pytest.fixture(scope='module')
def launch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launch]:
    ros2 = find_tool('ros2 launch')
    find_tool('ros2 lifecycle')
    folder = tmp_path_factory.mktemp('ros2_launch')
    deployment = relative_deployment(folder)
    run = folder / 'run'
    run.mkdir()
    domain = allocate_domain_id()
    env = isolated_ros_env(domain)
    proc = None
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():  # for the test's own node
            patch.setenv(name, value)
        try:
            proc = Proc('ros2 launch', [ros2, 'launch', 'dff_lifecycle', 'dff.launch.py',
                                        f'deployment:={deployment}'], env, cwd=run,
                        stacks=launched_pids)
            yield Launch(proc, env, run)
        finally:
            if proc is not None:
                if proc.popen.poll() is None:
                    os.killpg(proc.popen.pid, signal.SIGINT)  # Ctrl-C: launch stops them all
                    try:
                        proc.wait(30)
                    except AssertionError:
                        pass
                proc.kill()
            release_domain_id(domain)


def ask(launch: Launch, ros2_lifecycle, *args: str) -> subprocess.CompletedProcess:
    """`ros2 lifecycle` with args, asked again while it has not discovered the layer yet."""
    for spin_time_s in SPIN_TIMES_S:
        result = ros2_lifecycle(launch.env, *args, spin_time_s=spin_time_s)
        if result.stderr != 'Node not found\n':
            break
    return result


def test_ros2_lifecycle_set_pauses_and_resumes_a_training_layer(launch, ros2_lifecycle):
    def tool(*args: str) -> str:
        result = ask(launch, ros2_lifecycle, *args)
        assert result.returncode == 0, shown(result)
        return result.stdout

    with ros_client('_dff_ros2_launch_test') as ros:
        # The layers save their counts under the relative weight folders, w/server_<i>.
        scenarios.pause_and_resume(tool, ros.node, launch.proc.wait_for, launch.folder / 'w')


def test_ros2_launch_ends_with_0_and_writes_where_relative_paths_say(launch):
    code = launch.proc.wait(150)
    output = launch.proc.output
    assert code == 0, output
    assert re.search(r'^\[master-\d+\] test accuracy: \d\.\d{4}$', output, re.M), output
    assert sorted(str(p.relative_to(launch.folder)) for p in launch.folder.rglob('*.pt')) == [
        'w/server_1/mnist_tiny/layer_0.pt', 'w/server_2/mnist_tiny/layer_1.pt'], output
    assert (launch.folder / 'out' / 'metrics.json').is_file(), output
