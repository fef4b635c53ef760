"""
A server container's heartbeat: beats that a busy executor cannot hold back.

Beats used to come from a timer on the container's executor, so a callback that
took seconds (sending a wide layer's checkpoint on a 0.4-core device) silenced
them and the master "recovered" a live server. Now:

- a thread of its own publishes a beat every `HEARTBEAT_PERIOD_S`; it needs the
  GIL for a moment per beat, nothing else;
- the writer's DDS liveliness is AUTOMATIC (`HEARTBEAT_QOS` below): Fast DDS
  asserts it from its C++ threads even while Python is held up entirely, so
  the master can tell a busy process from a gone one;
- each beat carries the executor's last tick (a timer on the executor sets it),
  so an executor stuck in a callback still shows as no progress, and the
  master judges it hung after its hang bound (`master/heartbeats.py`).
"""
from __future__ import annotations

import threading

from builtin_interfaces.msg import Time
from dff_lifecycle.common.liveness import HEARTBEAT_LEASE_S, HEARTBEAT_PERIOD_S
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, LivelinessPolicy, QoSProfile,
                       ReliabilityPolicy)

HEARTBEAT_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.BEST_EFFORT,
    durability=DurabilityPolicy.VOLATILE,
    liveliness=LivelinessPolicy.AUTOMATIC,
    liveliness_lease_duration=Duration(seconds=HEARTBEAT_LEASE_S),
)
"""Container heartbeats: only the latest beat matters, and a lost one is no loss. The
writer's liveliness is AUTOMATIC with the heartbeat lease: Fast DDS asserts it from its own
threads every 2/3 lease, so the master's liveliness event says "process gone" (dead, frozen,
cut off) independently of whether the server's Python is busy (master/heartbeats.py)."""


class Heartbeat:
    """Publishes `~/heartbeat` from its own thread, stamped with the executor's last tick."""

    def __init__(self, node: Node, period_s: float = HEARTBEAT_PERIOD_S) -> None:
        self._node = node
        self._period_s = period_s
        self._publisher = node.create_publisher(Time, '~/heartbeat', HEARTBEAT_QOS)
        self._tick = node.get_clock().now().to_msg()
        self._timer = node.create_timer(period_s, self._on_tick)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name='heartbeat', daemon=True)
        self._thread.start()

    def _on_tick(self) -> None:
        self._tick = self._node.get_clock().now().to_msg()

    def _loop(self) -> None:
        while not self._stop.wait(self._period_s):
            try:
                self._publisher.publish(self._tick)
            except Exception:  # noqa: BLE001 - the context is shutting down: stop beating
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2 * self._period_s)
