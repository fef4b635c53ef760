"""The rmw and Fast DDS settings every DFF process starts with."""
from __future__ import annotations

import os
from typing import MutableMapping


def configure_environment(
        environ: MutableMapping[str, str] = os.environ) -> MutableMapping[str, str]:
    """
    Set transport defaults (keeping explicit user choices); call before `rclpy.init`.

    Also usable on a copy of the environment for child processes.
    """
    # Fast DDS LARGE_DATA: UDP only for discovery, samples over shared memory (same
    # host) or TCP, so multi-MiB samples are never cut into lossy UDP fragments.
    environ.setdefault('FASTDDS_BUILTIN_TRANSPORTS', 'LARGE_DATA')
    environ.setdefault('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp')
    return environ
