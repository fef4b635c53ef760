"""The real ROS 2 tools: `ros2` (launch, lifecycle) and `launch_test`, found and run.

From a ROS 2 install, or installed into the venv by scripts/install_ros2_tools.sh
from ../shared/ros2-tools. Where they are missing these tests skip, naming the
missing tool; with DFF_REQUIRE_ROS2_TOOLS=1 (set by .ci/run) they fail instead.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
import shutil
import signal
import subprocess
import sys
from typing import Optional

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# The Python modules each command needs, beyond the command itself.
NEEDS = {'ros2 launch': ('ros2', ['ros2launch', 'launch_ros']),
         'ros2 lifecycle': ('ros2', ['ros2lifecycle']),
         'launch_test': ('launch_test', ['launch_testing', 'launch_ros'])}
# `ros2 lifecycle` answers from what it discovered within --spin-time, which a starved
# machine (training, or several of them started at once on two cores) can make too short:
# a test asks again, with a longer spin time each time
SPIN_TIMES_S = (1.0, 2.0, 4.0, 8.0)


def find_tool(command: str) -> str:
    """Return the executable of `command` ('ros2 launch', ...); skip (or fail) when missing."""
    executable, modules = NEEDS[command]
    found = shutil.which(executable, path=os.pathsep.join([str(BIN), os.environ.get('PATH', '')]))
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if found and not missing:
        return found
    what = f'`{executable}`' if not found else f'the Python package(s) {", ".join(missing)}'
    reason = (f'{command} is not installed ({what} missing): source a ROS 2 install or run '
              'scripts/install_ros2_tools.sh (needs ../shared/ros2-tools)')
    if os.environ.get('DFF_REQUIRE_ROS2_TOOLS') == '1':
        pytest.fail(reason + '; DFF_REQUIRE_ROS2_TOOLS=1 says they must be there')
    pytest.skip(reason)


def run_to_end(argv: list[str], env: dict[str, str], timeout_s: float,
               cwd: Optional[Path] = None) -> subprocess.CompletedProcess:
    """Run a command in a process group of its own; kill the whole group if it overruns."""
    proc = subprocess.Popen(argv, env=env, cwd=cwd or REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f'{" ".join(argv)} still running after {timeout_s} s\n'
                             f'stdout:\n{out}\nstderr:\n{err}') from None
    finally:
        try:  # nothing it started outlives it
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def shown(result: subprocess.CompletedProcess) -> str:
    return (f'{" ".join(map(str, result.args))} -> {result.returncode}\n'
            f'stdout:\n{result.stdout}\nstderr:\n{result.stderr}')
