"""The heartbeat contract between server containers and the master (no torch, no ROS)."""
from __future__ import annotations

from dff_lifecycle.common.names import join, NAMESPACE

HEARTBEAT_PERIOD_S = 0.25   # a container beats this often, from a thread of its own
# Silent this long (four beats), and the middleware's liveliness lease of the heartbeat
# writer: a server is gone once the middleware agrees.
HEARTBEAT_LEASE_S = 1.0
# The DDS participant lease of this project's Fast DDS profiles (ros/fastdds_*.xml): a
# participant silent this long is dropped by the others (common/freeze.py).
PARTICIPANT_LEASE_S = 3.0


def heartbeat_topic(server: str) -> str:
    """`/dff/<server>/heartbeat`: the container's `~/heartbeat`."""
    return f'{join(NAMESPACE, server)}/heartbeat'
