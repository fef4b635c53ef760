"""The rmw and Fast DDS settings every DFF process starts with."""
from __future__ import annotations

import os
from pathlib import Path
from typing import MutableMapping

#: Participant lease 3 s (Fast DDS: 20 s), so a killed process leaves the graph quickly.
FASTDDS_PROFILE = Path(__file__).with_name('fastdds_profile.xml')


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
    # Secure by default: only this host's participants are discovered. Several hosts
    # (docs/multi_machine.md) say ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET themselves.
    environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    if not (environ.get('FASTDDS_DEFAULT_PROFILES_FILE')
            or environ.get('FASTRTPS_DEFAULT_PROFILES_FILE')):
        environ['FASTDDS_DEFAULT_PROFILES_FILE'] = str(FASTDDS_PROFILE)
    return environ
