"""Camera-style QoS of the image and prediction topics, from the node's parameters."""
from __future__ import annotations

from typing import Mapping

from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy


def image_qos(settings: Mapping) -> QoSProfile:
    """Keep last `depth`; best effort (like sensor data) unless `reliability` is reliable."""
    reliability = (ReliabilityPolicy.RELIABLE if settings['reliability'] == 'reliable'
                   else ReliabilityPolicy.BEST_EFFORT)
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=settings['depth'],
                      reliability=reliability)
