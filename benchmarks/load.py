"""Load beside a measured command: processes that spin on the host's cores."""
from __future__ import annotations

from contextlib import contextmanager
import subprocess
import sys
from typing import Iterator


@contextmanager
def cpu_hogs(count: int) -> Iterator[None]:
    """`count` processes that spin on the host's cores until the block ends."""
    hogs = [subprocess.Popen([sys.executable, '-c', 'while True: pass']) for _ in range(count)]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
