"""
Remove the Fast DDS shared-memory files of processes that are gone.

Every Fast DDS participant on one host keeps a segment in /dev/shm (32 MiB with this
project's one-host profile, `fastdds_localhost.xml`) and listening ports beside it. A
participant that exits cleanly removes them; one killed by a signal (a `kill -9` of a
server container, a respawn, an OOM kill) leaves them behind, and /dev/shm is memory:
the files stay until reboot. Fast DDS marks a file in use by holding a lock (`flock`)
on its companion lock file (`<name>_el`, ports also `<name>_sl`) for the owner's whole
life, so a file whose lock files nobody holds belongs to a dead process (the rule of
`fastdds shm clean`; the integration test checks it on real participants).
`dff_launch` calls `remove_orphans` after a child dies by a signal and when it ends;
the test suite runs it at its end.

The probe also tries a POSIX record lock, and those belong to a process: closing any
descriptor of a file drops all of that process's POSIX locks on it, and a process
sees its own as free. So `remove_orphans` does nothing in a process that has a
participant of its own. Stdlib only: no rclpy import.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
import fcntl
import os
from pathlib import Path
import re
import sys
import time
from typing import Callable, Optional, Sequence

SHM_DIR = Path('/dev/shm')
MIN_AGE_S = 5.0  # a file younger than this may belong to a participant being created
_SEGMENT = re.compile(r'^fastdds_[0-9a-z]{16}$')
_PORT = re.compile(r'^fastdds_port\d{1,5}$')
_LOCK_SUFFIXES = ('_el', '_sl')


@dataclass(frozen=True)
class Cleanup:
    """What `remove_orphans` removed."""

    files: int
    size: int  # bytes


def _held(lock_file: Path) -> bool:
    """
    Tell whether some process holds a lock on `lock_file` (unreadable: assume held).

    Fast DDS (3.x, through boost) holds BSD `flock` locks; POSIX record locks are
    probed too, in case a build takes those.
    """
    try:
        fd = os.open(lock_file, os.O_RDWR)
    except OSError:
        return True
    try:
        for take, release in ((fcntl.flock, fcntl.flock), (fcntl.lockf, fcntl.lockf)):
            try:
                take(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return True
            release(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def owns_shared_memory(maps: Path = Path('/proc/self/maps')) -> bool:
    """Whether this process maps a Fast DDS file (it has a participant, or had one)."""
    try:
        return 'fastdds_' in maps.read_text(encoding='utf-8', errors='replace')
    except OSError:
        return True  # cannot tell: behave as if it did


def orphans(shm_dir: Path = SHM_DIR, min_age_s: float = MIN_AGE_S,
            now: Callable[[], float] = time.time) -> list[Path]:
    """List the files of every Fast DDS segment and port whose lock files nobody holds."""
    try:
        names = set(os.listdir(shm_dir))
    except OSError:
        return []
    found: list[Path] = []
    for name in sorted(names):
        if not (_SEGMENT.match(name) or _PORT.match(name)):
            continue
        locks = [shm_dir / (name + s) for s in _LOCK_SUFFIXES if name + s in names]
        # A live file always has a held lock file; one left without any (its owner's
        # cleanup cut short) is an orphan once it is not a file being made right now.
        try:
            young = any(now() - path.stat().st_mtime < min_age_s
                        for path in (*locks, shm_dir / name))
        except OSError:
            continue  # removed meanwhile
        if young or any(_held(lock) for lock in locks):
            continue
        found += [shm_dir / name, *locks]
        mutex = f'sem.{name}_mutex'
        if mutex in names:
            found.append(shm_dir / mutex)
    return found


def remove_orphans(shm_dir: Path = SHM_DIR, min_age_s: float = MIN_AGE_S) -> Cleanup:
    """Remove the files of dead participants; nothing in a process that has its own."""
    if owns_shared_memory():
        return Cleanup(0, 0)
    files = size = 0
    for path in orphans(shm_dir, min_age_s):
        try:
            size += path.stat().st_size
            path.unlink()
            files += 1
        except OSError:
            pass  # removed by another cleaner meanwhile
    return Cleanup(files, size)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """`python -m dff_lifecycle.ros.shm_files [--min-age-s S]`: remove orphans, say how much."""
    parser = argparse.ArgumentParser(prog='python -m dff_lifecycle.ros.shm_files',
                                     description=main.__doc__)
    parser.add_argument('--min-age-s', type=float, default=MIN_AGE_S, metavar='S',
                        help=f'keep files younger than S seconds (default {MIN_AGE_S:g})')
    args = parser.parse_args(argv)
    if not args.min_age_s >= 0:
        parser.error(f'--min-age-s must be 0 or more, not {args.min_age_s}')
    done = remove_orphans(min_age_s=args.min_age_s)
    print(f'removed {done.files} orphaned Fast DDS shared-memory files '
          f'({done.size / 2**20:.1f} MiB) from {SHM_DIR}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
