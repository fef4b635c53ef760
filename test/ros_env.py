"""Isolated ROS 2 environments for tests: a unique ROS_DOMAIN_ID per test, localhost only.

Domain ids are leased through lock files under /tmp (dff_lifecycle/ros/domain_lease.py,
which the benchmarks use too), so concurrent pytest runs and benchmarks on one machine
never share a domain. The kernel drops a lease when its process dies.

    from ros_env import isolated_ros_env   # the ros_domain fixture comes from conftest

    def test_talk(ros_domain):            # os.environ is set for in-process nodes
        env = isolated_ros_env(ros_domain)  # same domain for subprocesses
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
import os
from typing import Optional

from dff_lifecycle.ros.domain_lease import allocate_domain_id, release_domain_id
from dff_lifecycle.ros.environment import configure_environment
import pytest
import rclpy
from rclpy.context import Context


def isolated_ros_env(domain_id: Optional[int] = None,
                     base: Optional[Mapping[str, str]] = None) -> dict[str, str]:
    """Return the environment for ROS subprocesses.

    That is `base` (default os.environ) plus the domain, the localhost discovery range
    and the transport defaults.

    Without `domain_id` a new one is leased (held until process exit).
    """
    env = dict(os.environ if base is None else base)
    env['ROS_DOMAIN_ID'] = str(allocate_domain_id() if domain_id is None else domain_id)
    env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    env.pop('ROS_STATIC_PEERS', None)
    env['PYTHONUNBUFFERED'] = '1'  # children report through stdout lines
    configure_environment(env)
    return env


@pytest.fixture
def ros_domain(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """Lease a domain id, exported in os.environ for nodes created in this process.

    Set before the test body runs, i.e. before its `rclpy.init`.
    """
    domain_id = allocate_domain_id()
    for name, value in isolated_ros_env(domain_id).items():
        if os.environ.get(name) != value:
            monkeypatch.setenv(name, value)
    monkeypatch.delenv('ROS_STATIC_PEERS', raising=False)
    try:
        yield domain_id
    finally:
        release_domain_id(domain_id)


@pytest.fixture
def context(ros_domain: int) -> Iterator[Context]:
    """Yield an initialised rclpy context of its own, on the test's isolated domain."""
    ctx = Context()
    rclpy.init(context=ctx)
    yield ctx
    rclpy.shutdown(context=ctx)
