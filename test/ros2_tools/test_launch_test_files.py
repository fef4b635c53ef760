"""test/launch/*.py pass under the real `launch_test` command, one launch_test per file.

The four files start their processes with launch_ros and check them with launch_testing
(the twins of test/integration/test_{launcher,lifecycle_cli,graph,manual_pause}.py).
They run at the same time, each on its own ROS domain (they lease one through
test/ros_env.py), so the four cost the time of the longest; each test here waits for
its own file and shows that file's output when it fails.
"""
from __future__ import annotations

import os
from pathlib import Path
import signal
import subprocess
import time
from typing import Iterator

import pytest
from real_tools import find_tool, REPO

pytestmark = pytest.mark.integration

FILES = sorted((REPO / 'test' / 'launch').glob('test_*_launch.py'))
TIMEOUT_S = 240.0  # all four together, on a loaded machine


class Started:
    """The launch_test processes, their output files and when they must be done."""

    def __init__(self) -> None:
        self.runs: dict[str, tuple[subprocess.Popen, Path]] = {}
        self.deadline = time.monotonic() + TIMEOUT_S


@pytest.fixture(scope='module')
def launch_tests(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Started]:
    """Start `launch_test <file>` for every file at once."""
    launch_test = find_tool('launch_test')
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    # the files import test/ros_env.py, scenarios.py ... as pytest's `pythonpath = test` does
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(REPO / 'test'),
                                                      env.get('PYTHONPATH')]))
    folder = tmp_path_factory.mktemp('launch_test')
    started = Started()
    try:
        for path in FILES:
            log = folder / f'{path.stem}.log'
            with open(log, 'w', encoding='utf-8') as out:
                started.runs[path.name] = (subprocess.Popen(
                    [launch_test, str(path)], env=env, cwd=REPO, stdout=out,
                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    start_new_session=True), log)
        yield started
    finally:
        for proc, _ in started.runs.values():
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # whatever it left running
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait()


@pytest.mark.parametrize('name', [p.name for p in FILES])
def test_passes_under_launch_test(launch_tests, name):
    proc, log = launch_tests.runs[name]
    try:
        code = proc.wait(max(0.0, launch_tests.deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        code = None
    output = log.read_text(encoding='utf-8', errors='replace')
    assert code == 0, f'launch_test {name} -> {code}\n{output}'
