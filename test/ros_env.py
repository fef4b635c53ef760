"""Isolated ROS 2 environments for tests: a unique ROS_DOMAIN_ID per test, localhost only.

Domain ids are leased through lock files under /tmp, so concurrent pytest runs
(or other users of this module) on one machine never share a domain. The
kernel drops a lease when its process dies, so crashed runs leave nothing stuck.

    from ros_env import isolated_ros_env   # the ros_domain fixture comes from conftest

    def test_talk(ros_domain):            # os.environ is set for in-process nodes
        env = isolated_ros_env(ros_domain)  # same domain for subprocesses
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
import fcntl
import os
from pathlib import Path
from typing import IO, Optional

from dff_lifecycle.ros.environment import configure_environment
import pytest
import rclpy
from rclpy.context import Context

LOCK_DIR = Path('/tmp/dff_ros_domains')
# 0 is everybody's default domain; Fast DDS ports allow ids up to 101 here.
DOMAIN_IDS = range(1, 102)

_leases: dict[int, IO[str]] = {}


def allocate_domain_id() -> int:
    """Lease a domain id no other process holds; kept until release or process exit."""
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    start = os.getpid() % len(DOMAIN_IDS)  # spread concurrent runs over the range
    for step in range(len(DOMAIN_IDS)):
        domain_id = DOMAIN_IDS[(start + step) % len(DOMAIN_IDS)]
        if domain_id in _leases:
            continue
        lock = open(LOCK_DIR / f'{domain_id}.lock', 'w')
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        _leases[domain_id] = lock
        return domain_id
    raise RuntimeError(f'all ROS domain ids {DOMAIN_IDS.start}..{DOMAIN_IDS.stop - 1} are in use')


def release_domain_id(domain_id: int) -> None:
    """Give a leased domain id back (no-op if it is not leased here)."""
    lock = _leases.pop(domain_id, None)
    if lock is not None:
        lock.close()  # closing the file drops the flock


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
