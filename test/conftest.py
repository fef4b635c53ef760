"""Shared fixtures: the data root (also exported for child processes)."""
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
