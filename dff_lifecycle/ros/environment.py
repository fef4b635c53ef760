"""The rmw and Fast DDS settings every DFF process starts with."""
from __future__ import annotations

import os
from pathlib import Path
from typing import MutableMapping

#: Participant lease 3 s (Fast DDS: 20 s), so a killed process leaves the graph quickly.
FASTDDS_PROFILE = Path(__file__).with_name('fastdds_profile.xml')
#: rmw_fastrtps's LOCALHOST configuration with a 32 MiB shared-memory segment (and the lease).
FASTDDS_LOCALHOST_PROFILE = Path(__file__).with_name('fastdds_localhost.xml')
OUR_PROFILES = (str(FASTDDS_PROFILE), str(FASTDDS_LOCALHOST_PROFILE))


def configure_environment(
        environ: MutableMapping[str, str] = os.environ) -> MutableMapping[str, str]:
    """
    Set transport defaults (keeping explicit user choices); call before `rclpy.init`.

    Also usable on a copy of the environment for child processes.

    Discovery stays on this host unless ROS_AUTOMATIC_DISCOVERY_RANGE says otherwise.
    rmw_fastrtps configures LOCALHOST with a 512 KiB shared-memory segment, which DFF's
    batches overflow; unless the user names a Fast DDS profile of their own, LOCALHOST
    is therefore run as SYSTEM_DEFAULT with fastdds_localhost.xml, the same discovery
    and transports with a segment that holds the data in flight (see that file). The
    translation is stable: a child process configured again keeps it.
    """
    environ.setdefault('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp')
    # Secure by default: only this host's participants are discovered. Several hosts
    # (docs/multi_machine.md) say ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET themselves.
    scope = environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    chosen = (environ.get('FASTDDS_DEFAULT_PROFILES_FILE')
              or environ.get('FASTRTPS_DEFAULT_PROFILES_FILE'))
    if chosen and chosen not in OUR_PROFILES:  # the user's own Fast DDS profile
        environ.setdefault('FASTDDS_BUILTIN_TRANSPORTS', 'LARGE_DATA')
        return environ
    if scope == 'LOCALHOST' or (scope == 'SYSTEM_DEFAULT'
                                and chosen == str(FASTDDS_LOCALHOST_PROFILE)):
        environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'SYSTEM_DEFAULT'
        environ['FASTDDS_DEFAULT_PROFILES_FILE'] = str(FASTDDS_LOCALHOST_PROFILE)
        return environ
    # Across hosts, Fast DDS LARGE_DATA: UDP only for discovery, samples over shared
    # memory (same host) or TCP, so multi-MiB samples are never cut into lossy UDP
    # fragments (the emulated cluster says UDPv4 itself).
    environ.setdefault('FASTDDS_BUILTIN_TRANSPORTS', 'LARGE_DATA')
    environ['FASTDDS_DEFAULT_PROFILES_FILE'] = str(FASTDDS_PROFILE)
    return environ
