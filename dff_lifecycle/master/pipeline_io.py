"""
The master's ends of a deployed pipeline.

The input publishers, the result and status subscriptions that feed the
`PipelineWatch`, and the check that every topic of the pipeline has both ends
before the first batch goes out.
"""
from __future__ import annotations

import time
from typing import Callable, Optional, Sequence

from builtin_interfaces.msg import Time
from dff_lifecycle.common.liveness import heartbeat_topic
from dff_lifecycle.master.errors import PipelineError
from dff_lifecycle.master.heartbeats import HANG_S, HeartbeatWatch
from dff_lifecycle.master.pipeline_watch import PipelineWatch
from dff_lifecycle.master.plan import DistributionPlan, model_topics
from dff_lifecycle.ros.heartbeat import HEARTBEAT_QOS
from dff_lifecycle.wire.endpoints import TensorReceiver, TensorSender
from dff_lifecycle.wire.qos import STATUS_QOS, TENSOR_QOS
from dff_msgs.msg import LayerStatus, TensorChunk
import numpy as np
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.node import Node


class PipelineIO:
    """Publishers, subscriptions and senders of one plan, opened and closed together."""

    def __init__(self, node: Node, plan: DistributionPlan, chunk_elements: int,
                 servers: Optional[Sequence[str]] = None, hang_s: float = HANG_S,
                 resumed_at: Callable[[], Optional[float]] = lambda: None) -> None:
        self.node = node
        self.plan = plan  # recovery replaces it when layers move
        self.chunk_elements = chunk_elements
        self.watch = PipelineWatch({p.full_name: p.unit for p in plan.placements},
                                   {p.unit: p.server for p in plan.placements})
        # Every server's beat: the idle ones are where a lost server's layers can go.
        self.servers = list(servers) if servers else sorted({p.server for p in plan.placements})
        self.heartbeats = HeartbeatWatch(self.servers, hang_s=hang_s, resumed_at=resumed_at)
        self._entities: list = []
        self._senders: dict[str, TensorSender] = {}

    def open(self) -> None:  # noqa: A003 (a method name; the builtin stays reachable)
        node, plan = self.node, self.plan
        train_in, infer_in, result = model_topics(plan.model)
        source = node.get_fully_qualified_name()
        for name, topic in (('train', train_in), ('infer', infer_in)):
            pub = node.create_publisher(TensorChunk, topic, TENSOR_QOS)
            self._entities.append(pub)
            self._senders[name] = TensorSender(pub, source=source,
                                               chunk_elements=self.chunk_elements)
        receiver = TensorReceiver(node.get_logger())

        def on_result(msg: bytes) -> None:
            tensor = receiver.on_message(msg)
            if tensor is not None:
                self.watch.on_result(tensor.source, tensor.stream, tensor.batch_seq,
                                     tensor.array)

        self._entities.append(node.create_subscription(TensorChunk, result, on_result,
                                                       TENSOR_QOS, raw=True))
        for p in plan.placements:
            self._entities.append(node.create_subscription(LayerStatus, p.topics.status,
                                                           self.watch.on_status, STATUS_QOS))
        for server in self.servers:
            # The beat's stamp tells progress; the liveliness event tells "process gone".
            events = SubscriptionEventCallbacks(
                liveliness=lambda info, s=server: self.heartbeats.liveliness(
                    s, info.alive_count > 0))
            self._entities.append(node.create_subscription(
                Time, heartbeat_topic(server),
                lambda beat, s=server: self.heartbeats.beat(s, (beat.sec, beat.nanosec)),
                HEARTBEAT_QOS, event_callbacks=events))

    def close(self) -> None:
        for entity in self._entities:
            if hasattr(entity, 'publish'):
                self.node.destroy_publisher(entity)
            else:
                self.node.destroy_subscription(entity)
        self._entities, self._senders = [], {}

    def wait_connected(self, timeout_s: float) -> None:
        """Every topic of the pipeline has its reader and writer, so no first batch is lost."""
        node, plan = self.node, self.plan
        deadline = time.monotonic() + timeout_s
        links = dict.fromkeys(topic for p in plan.placements for topic in p.topics.input_topics())
        for topic in links:
            # Both ends must be known: layer outputs are published by other layers.
            while node.count_subscribers(topic) < 1 or node.count_publishers(topic) < 1:
                if time.monotonic() > deadline:
                    raise PipelineError(f'no subscriber on {topic} after {timeout_s} s')
                time.sleep(0.05)
        reporters = sum(1 for p in plan.placements
                        if p.parameters['report_goodness'] or p.parameters['report_features'])
        _, _, result = model_topics(plan.model)
        while node.count_publishers(result) < reporters:
            if time.monotonic() > deadline:
                raise PipelineError(f'missing result publishers on {result}')
            time.sleep(0.05)

    def send(self, which: str, array: np.ndarray, *, stream: str, batch_seq: int,
             kind: int) -> None:
        """Publish a tensor on the 'train' or 'infer' input of the model."""
        self._senders[which].send(array, model=self.plan.model, stream=stream,
                                  batch_seq=batch_seq, kind=kind)
