"""Shared fixtures: the data root (also exported for child processes), one torch thread."""
import os
from pathlib import Path

import pytest

# The ros_domain fixture (a leased ROS_DOMAIN_ID per test) for every test module.
pytest_plugins = ['ros_env']

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_ROOT = Path(os.environ.get('DFF_DATA_ROOT', REPO_ROOT.parent / 'shared' / 'data')).resolve()
os.environ['DFF_DATA_ROOT'] = str(DATA_ROOT)  # masters and servers started by tests read it


@pytest.fixture(scope='session')
def data_root() -> Path:
    """$DFF_DATA_ROOT, else the shared data beside the checkout."""
    return DATA_ROOT


@pytest.fixture(scope='session', autouse=True)
def one_torch_thread():
    """Compute on one torch thread in the test process.

    The suite runs two workers on two cores beside the processes the tests start: torch's
    threads spin-wait for each other whenever another process holds a core, and a small
    model then trains many times slower (the paper recipe's 2.8 s test took 40 s in the
    suite on 2 threads). Child processes choose their own (`torch_threads`).
    """
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pytest_sessionfinish(session, exitstatus):
    """Remove the shared memory that processes the tests killed left in /dev/shm.

    Run once, by the controller (not by each xdist worker), as a process of its own: a
    process with a Fast DDS participant of its own must not probe the lock files.
    """
    if os.environ.get('PYTEST_XDIST_WORKER'):
        return
    import subprocess
    import sys
    subprocess.run([sys.executable, '-m', 'dff_lifecycle.ros.shm_files'], timeout=60,
                   stdout=subprocess.DEVNULL, check=False)
