"""Shared fixtures: data root and an isolated ROS domain per test."""
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='session')
def data_root() -> Path:
    """Data root for tests: $DFF_DATA_ROOT, else the shared data beside the checkout."""
    return Path(os.environ.get('DFF_DATA_ROOT', REPO_ROOT.parent / 'shared' / 'data')).resolve()
