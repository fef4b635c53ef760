"""Fixtures for the tests against the real ROS 2 tools (see real_tools.py)."""
from __future__ import annotations

import subprocess
from typing import Callable

import pytest
from real_tools import find_tool, run_to_end


@pytest.fixture
def ros2_lifecycle() -> Callable[..., subprocess.CompletedProcess]:
    """`ros2 lifecycle VERB ...` without the daemon (nothing is left running), to the end."""
    ros2 = find_tool('ros2 lifecycle')

    def run(env: dict[str, str], verb: str, *args: str, spin_time_s: float = 1.0,
            timeout_s: float = 60.0) -> subprocess.CompletedProcess:
        return run_to_end([ros2, 'lifecycle', verb, '--no-daemon', '--spin-time',
                           str(spin_time_s), *args], env, timeout_s)
    return run
