"""Load beside a measured command: processes that spin on the host's cores."""
from __future__ import annotations

from contextlib import contextmanager
import subprocess
import sys
from typing import Iterator


# Spins until the block ends, or until its parent is gone: a benchmark stopped by a signal
# that skips its cleanup (SIGTERM) once left its hogs spinning for half an hour.
HOG = 'import os\nparent = os.getppid()\nwhile os.getppid() == parent:\n    pass\n'


@contextmanager
def cpu_hogs(count: int) -> Iterator[None]:
    """`count` processes that spin on the host's cores until the block ends."""
    hogs = [subprocess.Popen([sys.executable, '-c', HOG]) for _ in range(count)]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
