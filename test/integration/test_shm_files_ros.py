"""A participant killed by SIGKILL leaves its shared memory; it is found and removed.

Real Fast DDS processes on an isolated domain: the killed one's segment is an orphan,
a live one's is not (its owner holds the lock), and dff_lifecycle.ros.shm_files,
run as its own process as dff_launch runs it, removes the first and keeps the second.
"""
from __future__ import annotations

from pathlib import Path
import re
import signal
import subprocess
import sys

from dff_lifecycle.ros.shm_files import orphans, SHM_DIR
import pytest
from ros_env import isolated_ros_env  # noqa: F401 - fixture

pytestmark = pytest.mark.integration

PARTICIPANT = """
import rclpy, sys, time
from dff_lifecycle.ros.environment import configure_environment
configure_environment()
rclpy.init()
node = rclpy.create_node('shm_probe')
print('up', flush=True)
time.sleep(120)
"""


def start(env: dict[str, str]) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, '-c', PARTICIPANT], env=env, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline() == 'up\n'
    return proc


def segments_of(pid: int) -> set[Path]:
    maps = Path(f'/proc/{pid}/maps').read_text()
    names = re.findall(r'/dev/shm/(fastdds_[0-9a-z]{16})$', maps, re.M)
    return {SHM_DIR / name for name in names}


def test_a_killed_participants_segment_is_removed_and_a_live_ones_kept(ros_domain):
    env = isolated_ros_env(ros_domain)
    killed = start(env)
    left = segments_of(killed.pid)  # alone on its domain: its own segment only
    live = start(env)
    try:
        kept = segments_of(live.pid) - left  # a process also maps the segments of its peers
        assert kept and left
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        assert all(path.exists() for path in left)  # SIGKILL: nobody removed them
        found = set(orphans(min_age_s=0))
        assert left <= found and not kept & found
        done = subprocess.run(
            [sys.executable, '-m', 'dff_lifecycle.ros.shm_files', '--min-age-s', '0'],
            capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        assert not any(path.exists() for path in left)
        assert all(path.exists() for path in kept)
    finally:
        for proc in (live, killed):
            proc.kill()
            proc.wait()
