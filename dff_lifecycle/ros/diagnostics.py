"""
`/diagnostics` for layer nodes and server containers: a small diagnostic_updater.

As ROS's diagnostic_updater does: each node publishes a `DiagnosticArray` on
`/diagnostics` (default QoS: reliable, volatile, depth 10, as the aggregator and
rqt_robot_monitor subscribe), once a period (1 s) from a timer of its own, on
the executor that spins it (no thread), and at once when something changes, at
most every MIN_INTERVAL_S (changes closer together wait for the next period).
Each task makes one `DiagnosticStatus` named `<node>: <task>` with the device's
hardware_id (`<server>@<host>`: a layer runs where its container does).

What the levels mean is `common/health.py`; this module gathers the facts the
nodes already keep (a layer's LayerStatus message, a container's hosted layers,
/proc and the cgroup) and turns reports into messages. Layers call it only on
transitions and errors, never per batch.
"""
from __future__ import annotations

import os
import socket
import threading
import time
from typing import Callable, Iterable, Optional

from dff_lifecycle.common.health import (assess_container, CONTAINER_TASK, ContainerFacts,
                                         entry_name, LAYER_TASK, LayerFacts, LayerHealth, Level,
                                         Report)
from dff_lifecycle.common.memory_limit import cgroup_room
from dff_lifecycle.core.ff.memory import OPTIMIZER_SLOTS
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node
from rclpy.qos import QoSProfile

DIAGNOSTICS_TOPIC = '/diagnostics'
DIAGNOSTICS_QOS = QoSProfile(depth=10)  # rclpy's default: reliable, volatile, keep last 10
PERIOD_S = 1.0
MIN_INTERVAL_S = 0.2
PRIMARY_STATES = ('unconfigured', 'inactive', 'active', 'finalized')

Clock = Callable[[], float]


def hardware_id(server: str = '') -> str:
    """`server_1@host`: the device a container (and the layers it hosts) runs on."""
    host = socket.gethostname()
    return f'{server}@{host}' if server else host


def to_status(name: str, hardware: str, report: Report) -> DiagnosticStatus:
    return DiagnosticStatus(level=bytes([int(report.level)]), name=name,
                            message=report.message, hardware_id=hardware,
                            values=[KeyValue(key=k, value=v) for k, v in report.values])


class DiagnosticsUpdater:
    """One node's diagnostic tasks, published together on `/diagnostics`."""

    def __init__(self, node: Node, hardware: str, period_s: float = PERIOD_S,
                 min_interval_s: float = MIN_INTERVAL_S, clock: Clock = time.monotonic) -> None:
        self._node = node
        self.hardware_id = hardware
        self.min_interval_s = min_interval_s
        self._clock = clock
        self._tasks: list[tuple[str, Callable[[], Report]]] = []
        self._lock = threading.Lock()
        self._published_at = -float('inf')
        self._warned = False
        self._pub = node.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, DIAGNOSTICS_QOS)
        self._timer = node.create_timer(period_s, self.update)

    def add(self, task: str, report: Callable[[], Report]) -> None:
        """Add a task: `report()` is called at each publication, on the publishing thread."""
        with self._lock:
            self._tasks.append((entry_name(self._node.get_fully_qualified_name(), task), report))

    def update(self) -> None:
        """Publish every task's status now (the timer's callback)."""
        with self._lock:
            self._publish()

    def request(self) -> bool:
        """Something changed: publish now, unless the last publication is too recent."""
        with self._lock:
            if self._clock() - self._published_at < self.min_interval_s:
                return False  # the next period's publication carries it
            self._publish()
            return True

    def statuses(self) -> list[DiagnosticStatus]:
        """Run every task once (what the next publication would carry)."""
        out = []
        for name, report in self._tasks:
            try:
                result = report()
            except Exception as exc:  # noqa: BLE001 - a broken task must not stop the executor
                result = Report(Level.ERROR, f'diagnostics task failed: {exc}', ())
            out.append(to_status(name, self.hardware_id, result))
        return out

    def _publish(self) -> None:
        msg = DiagnosticArray(status=self.statuses())
        try:
            msg.header.stamp = self._node.get_clock().now().to_msg()
            self._pub.publish(msg)
        except Exception as exc:  # noqa: BLE001 - e.g. a node being destroyed
            if not self._warned:
                self._warned = True
                self._node.get_logger().warning(f'could not publish diagnostics: {exc}')
        self._published_at = self._clock()


class LayerDiagnostics:
    """
    A layer node's `/diagnostics` entry, from the LayerStatus message it keeps anyway.

    The node calls `failed` when a transition or a batch fails and `changed` after a
    transition or a rejection; the updater reads the facts at 1 Hz.
    """

    def __init__(self, node, status, clock: Clock = time.monotonic, **updater) -> None:
        self._node = node
        self._status = status
        self._clock = clock
        self._health = LayerHealth()
        self._lock = threading.Lock()
        self._announced = ''  # the state a transition in progress leads to
        server = node.get_parameter('server').value or ''
        self.updater = DiagnosticsUpdater(node, hardware_id(server), clock=clock, **updater)
        self.updater.add(LAYER_TASK, self.report)

    def failed(self, what: str, error_processing: bool = False) -> None:
        """Report a failed transition or batch; `error_processing`: on_error runs next."""
        with self._lock:
            self._health.failed(what, error_processing)
            self._announced = ''  # the transition in progress leads nowhere new
        self._report_now()

    def changed(self, transition_to: Optional[str] = None) -> None:
        """Report a successful transition to `transition_to`, or (None) a rejected tensor."""
        if transition_to:
            with self._lock:
                self._health.transition()
                self._announced = transition_to
        self._report_now()

    def _report_now(self) -> None:
        if not self.updater.request():
            self.report()  # not published yet, but the rules see every change

    def report(self) -> Report:
        facts = self.facts()
        with self._lock:
            return self._health.assess(facts, self._clock())

    def facts(self) -> LayerFacts:
        node, s = self._node, self._status
        state = node.lifecycle_label
        if state not in PRIMARY_STATES and self._announced:
            state = self._announced  # inside a transition callback: where it leads
        return LayerFacts(
            state=state, batches=s.batches_seen, inference_batches=s.inference_batches,
            loss=s.loss, goodness_positive=s.goodness_positive,
            goodness_negative=s.goodness_negative, rejected=s.rejected_tensors, error=s.error,
            weight_file=s.weight_file, weights_loaded=s.weights_loaded,
            memory_bytes=layer_state_bytes(getattr(node, '_trainer', None)),
            model=node.get_parameter('model').value or '',
            server=node.get_parameter('server').value or '',
            not_learning=node.learning_verdict() if hasattr(node, 'learning_verdict') else '')


def layer_state_bytes(trainer) -> int:
    """
    Return the bytes of a layer's weights, their gradients and its optimiser's state.

    Counted as the memory check before configure counts them (core/ff/memory.py), from
    the layer's parameters, which steps never add or remove; 0 when unconfigured.
    """
    if trainer is None:
        return 0
    weights = sum(p.numel() * p.element_size() for p in trainer.layer.parameters())
    return int(weights * (2 + OPTIMIZER_SLOTS.get(trainer.hparams.optimizer, 4)))


def process_rss_bytes(statm: str = '/proc/self/statm') -> Optional[int]:
    """Return this process's resident memory, or None where /proc is not there."""
    try:
        with open(statm, encoding='ascii') as f:
            return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
    except (OSError, ValueError, IndexError):
        return None


def _names(nodes: Iterable[Node]) -> Iterable[str]:
    for node in nodes:
        try:
            yield node.get_fully_qualified_name()
        except Exception:  # noqa: BLE001 - destroyed by a removal in another thread
            continue


class ContainerDiagnostics:
    """A server container's `/diagnostics` entry: layers hosted, memory, uptime."""

    def __init__(self, node: Node, layers: Callable[[], Iterable[Node]], weight_dir: str = '',
                 clock: Clock = time.monotonic, **updater) -> None:
        self._layers = layers
        self._weight_dir = weight_dir
        self._clock = clock
        self._started = clock()
        self.updater = DiagnosticsUpdater(node, hardware_id(node.get_name()), clock=clock,
                                          **updater)
        self.updater.add(CONTAINER_TASK, self.report)

    def report(self) -> Report:
        return assess_container(self.facts())

    def facts(self) -> ContainerFacts:
        return ContainerFacts(
            layers=tuple(sorted(_names(self._layers()))),
            rss_bytes=process_rss_bytes(), cgroup=cgroup_room(),
            uptime_s=self._clock() - self._started, pid=os.getpid(),
            weight_dir=os.path.abspath(self._weight_dir) if self._weight_dir else '')
