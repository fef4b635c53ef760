"""
QoS profiles of the wire: tensors and statuses (heartbeats: `ros/heartbeat.py`).

Each profile says why it is what it is, with the measurement that chose it.
"""
from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

TENSOR_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_ALL,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)
"""Tensor chunks: reliable + KEEP_ALL, so unread chunks wait in the reader's history
instead of being overwritten. A burst of 30 x 4 MiB tensors to a subscriber that
needs 0.1 s per message arrives complete with this profile, while a reliable
KEEP_LAST(10) delivered only 2-12 of 30 (benchmarks/transport_bench.py, qos_burst;
test/integration/test_transport_ros.py). The backlog costs memory on the reader,
so senders bound the number of tensors in flight. Volatile: a tensor only matters
to subscribers that exist when it is sent (publishers wait for a match first).
"""

STATUS_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=10,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)
"""Periodic status/progress messages: reliable, small queue; only recent ones matter."""

STATUS_LATCHED_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)
"""Latest state of each publisher, replayed to late joiners (e.g. a master that starts
after its layers). Publishers with this profile also serve STATUS_QOS subscribers."""


LAYER_STATUS_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=10,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)
"""Layer status publishers: like STATUS_QOS, plus the last messages for late joiners,
so a monitor started while a layer is idle still sees its state. The master subscribes
volatile (STATUS_QOS) and so never mistakes an earlier run's status for progress."""
