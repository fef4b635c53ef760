"""The cores a process may use: affinity and cgroup CPU quota, and the torch threads they give."""
from __future__ import annotations

from pathlib import Path
import subprocess
import sys

from dff_lifecycle.common.cpu_limit import (default_threads, quota_cores, torch_threads,
                                            usable_cores)


def write_v1(root: Path, group: str, quota: int, period: int = 100_000) -> None:
    folder = root / 'cpu' / group
    folder.mkdir(parents=True, exist_ok=True)
    (folder / 'cpu.cfs_quota_us').write_text(f'{quota}\n')
    (folder / 'cpu.cfs_period_us').write_text(f'{period}\n')


def test_a_v1_quota_of_a_device_is_read_in_cores(tmp_path: Path):
    write_v1(tmp_path, 'dff/c/d1', 40_000)
    assert quota_cores(tmp_path, '5:cpu,cpuacct:/dff/c/d1\n4:memory:/dff/c/d1\n') == 0.4


def test_no_quota_means_no_limit(tmp_path: Path):
    write_v1(tmp_path, 'free', -1)                        # v1's "unlimited"
    assert quota_cores(tmp_path, '5:cpu,cpuacct:/free\n') is None
    assert quota_cores(tmp_path, '5:cpu,cpuacct:/not/there\n') is None
    assert quota_cores(tmp_path, '') is None


def test_the_tightest_quota_above_the_process_counts(tmp_path: Path):
    write_v1(tmp_path, 'dff', 150_000)
    write_v1(tmp_path, 'dff/c', -1)
    write_v1(tmp_path, 'dff/c/d2', 300_000)
    assert quota_cores(tmp_path, '5:cpu,cpuacct:/dff/c/d2\n') == 1.5


def test_a_v2_cpu_max_is_read(tmp_path: Path):
    box = tmp_path / 'box'
    box.mkdir()
    (box / 'cpu.max').write_text('max 100000\n')
    assert quota_cores(tmp_path, '0::/box\n') is None
    (box / 'cpu.max').write_text('25000 100000\n')
    assert quota_cores(tmp_path, '0::/box\n') == 0.25
    (box / 'cpu.max').write_text('garbage\n')              # unreadable: no limit, no error
    assert quota_cores(tmp_path, '0::/box\n') is None


def test_threads_follow_the_quota_not_the_visible_cores():
    assert usable_cores(quota=0.4, affinity=16) == 0.4
    assert usable_cores(quota=None, affinity=2) == 2.0
    assert usable_cores(quota=8.0, affinity=2) == 2.0
    assert default_threads(0.4) == 1                      # never zero threads
    assert default_threads(1.5) == 2
    assert default_threads(2.0) == 2
    assert torch_threads(3) == 3                          # asked for: as asked
    assert torch_threads(0) == default_threads()


def test_a_process_in_this_machine_sees_its_own_affinity():
    """The real /proc and /sys: taskset to one core gives one thread."""
    code = ('from dff_lifecycle.common.cpu_limit import default_threads; '
            'print(default_threads())')
    done = subprocess.run(['taskset', '-c', '0', sys.executable, '-c', code],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == '1'
