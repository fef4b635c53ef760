"""Orphaned Fast DDS shared-memory files: found by their free locks, removed, others kept."""
from __future__ import annotations

import os
from pathlib import Path
import subprocess
import sys

from dff_lifecycle.ros import shm_files
from dff_lifecycle.ros.shm_files import orphans, owns_shared_memory, remove_orphans
import pytest

SEGMENT = 'fastdds_0123456789abcdef'
PORT = 'fastdds_port7413'
HOLD = """
import fcntl, os, sys, time
fds = [os.open(p, os.O_RDWR) for p in sys.argv[2:]]
for fd in fds:
    getattr(fcntl, sys.argv[1])(fd, fcntl.LOCK_EX)
print('held', flush=True)
time.sleep(60)
"""


def make(folder: Path, *names: str) -> None:
    for name in names:
        (folder / name).write_bytes(b'\0' * 64)


def hold(how: str, *paths: Path) -> subprocess.Popen:
    """Start a process that holds locks on `paths` (Fast DDS: flock), as a participant does."""
    proc = subprocess.Popen([sys.executable, '-c', HOLD, how, *map(str, paths)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == 'held\n'
    return proc


@pytest.mark.parametrize('how', ['flock', 'lockf'])
def test_files_whose_locks_a_live_process_holds_are_kept_and_freed_when_it_dies(tmp_path, how):
    make(tmp_path, SEGMENT, SEGMENT + '_el', PORT, PORT + '_el', PORT + '_sl',
         f'sem.{PORT}_mutex')
    owner = hold(how, tmp_path / (SEGMENT + '_el'), tmp_path / (PORT + '_sl'))
    try:
        assert orphans(tmp_path, min_age_s=0) == []
    finally:
        owner.kill()
        owner.wait()
    assert sorted(p.name for p in orphans(tmp_path, min_age_s=0)) == sorted([
        SEGMENT, SEGMENT + '_el', PORT, PORT + '_el', PORT + '_sl', f'sem.{PORT}_mutex'])


def test_young_files_and_files_fastdds_did_not_make_are_kept(tmp_path):
    make(tmp_path, SEGMENT, SEGMENT + '_el', 'fastdds_notahexname_el', 'lttng-ust-wait-6',
         'fastdds_portX')
    now = (tmp_path / SEGMENT).stat().st_mtime
    assert orphans(tmp_path, min_age_s=5, now=lambda: now + 1) == []
    assert [p.name for p in orphans(tmp_path, min_age_s=5, now=lambda: now + 6)] == [
        SEGMENT, SEGMENT + '_el']


def test_a_port_left_without_its_lock_files_is_an_orphan(tmp_path):
    make(tmp_path, PORT, f'sem.{PORT}_mutex')
    assert [p.name for p in orphans(tmp_path, min_age_s=0)] == [PORT, f'sem.{PORT}_mutex']


def test_removal_says_what_it_freed_and_does_nothing_in_a_process_with_a_participant(
        tmp_path, monkeypatch):
    make(tmp_path, SEGMENT, SEGMENT + '_el')
    monkeypatch.setattr(shm_files, 'owns_shared_memory', lambda: True)
    assert remove_orphans(tmp_path, min_age_s=0).files == 0
    assert (tmp_path / SEGMENT).exists()
    monkeypatch.setattr(shm_files, 'owns_shared_memory', lambda: False)
    done = remove_orphans(tmp_path, min_age_s=0)
    assert (done.files, done.size) == (2, 128)
    assert os.listdir(tmp_path) == []


def test_a_process_is_known_by_the_fastdds_files_it_maps(tmp_path):
    maps = tmp_path / 'maps'
    maps.write_text('7f00-7f01 rw-s 0 00:1a 12 /dev/shm/fastdds_0123456789abcdef\n')
    assert owns_shared_memory(maps)
    maps.write_text('7f00-7f01 r-xp 0 00:1a 12 /usr/lib/libc.so.6\n')
    assert not owns_shared_memory(maps)
    assert owns_shared_memory(tmp_path / 'missing')  # cannot tell: do nothing
