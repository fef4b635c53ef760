"""Where this process sits in the cgroup tree, and the integer files cgroups keep. No torch."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

CGROUP_ROOT = Path('/sys/fs/cgroup')


def own_cgroup(proc_cgroup: str, controller: str) -> tuple[Optional[str], Optional[str]]:
    """Return (v1 path of `controller`, v2 path) from /proc/self/cgroup text."""
    v1 = v2 = None
    for line in proc_cgroup.splitlines():
        parts = line.split(':', 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controller in controllers.split(','):
            v1 = path
        elif controllers == '':
            v2 = path
    return v1, v2


def read_proc_cgroup(proc_cgroup: Optional[str] = None) -> Optional[str]:
    """Return `proc_cgroup`, else the text of /proc/self/cgroup (None where unreadable)."""
    if proc_cgroup is not None:
        return proc_cgroup
    try:
        return Path('/proc/self/cgroup').read_text()
    except OSError:
        return None


def cgroup_paths(controller: str,
                 proc_cgroup: Optional[str] = None) -> tuple[Optional[str], Optional[str]]:
    """Return (v1 path of `controller`, v2 path) of this process; (None, None) if unknown."""
    text = read_proc_cgroup(proc_cgroup)
    return (None, None) if text is None else own_cgroup(text, controller)


def read_int(path: Path) -> Optional[int]:
    """Return the integer in `path`; None if it is missing, unreadable or 'max'."""
    try:
        text = path.read_text().split()
    except OSError:
        return None
    if not text or text[0] == 'max':
        return None
    try:
        return int(text[0])
    except ValueError:
        return None
