"""Which member of an emulated cluster each process of a deployment runs on (pure)."""
from __future__ import annotations

from pathlib import Path
import sys
from typing import Sequence

from dff_lifecycle.cluster.spec import ClusterSpec, MASTER
from dff_lifecycle.common.names import MASTER_NAME, server_index


def member_for(process_name: str, spec: ClusterSpec) -> str:
    """Return the member of a process: master, or device d<((i-1) mod k) + 1> for server_<i>."""
    if process_name == MASTER_NAME:
        return MASTER
    index = server_index(process_name)
    if index is None:
        raise ValueError(f'{process_name!r} is neither the master nor a server')
    return spec.device_names[(index - 1) % spec.devices]


def on_member(argv: Sequence[str], spec: ClusterSpec, member: str, state_dir: Path) -> list[str]:
    """Return argv prefixed so that it runs on `member` (through `dff_cluster exec`)."""
    return [sys.executable, '-m', 'dff_lifecycle.cli.cluster', '--name', spec.name,
            '--state-dir', str(state_dir), 'exec', member, '--', *argv]


def weight_dir(data_dir: Path, member: str) -> str:
    """Return the folder of a device's local disk that holds weights."""
    return str(data_dir / member / 'weights')
