"""/diagnostics messages, the bounded updater, and a real FFLayerNode's entry in-process."""
from __future__ import annotations

from types import SimpleNamespace

from dff_lifecycle.common.health import CONTAINER_KEYS, LAYER_KEYS, Level, Report
from dff_lifecycle.core.run.weights import layer_weight_path
from dff_lifecycle.nodes.ff_layer_node import FFLayerNode
from dff_lifecycle.ros.diagnostics import (ContainerDiagnostics, DIAGNOSTICS_TOPIC,
                                           DiagnosticsUpdater, layer_state_bytes,
                                           process_rss_bytes, to_status)
from dff_lifecycle.wire.messages import tensor_to_msgs
from dff_msgs.msg import TensorChunk
from diagnostic_msgs.msg import DiagnosticStatus
from layer_ports import ports
import numpy as np
import pytest
import rclpy
from rclpy.parameter import Parameter

IN, OUT = 12, 8


class FakeClock:

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeNode:
    """What the updater uses of a node: a publisher, a timer, a clock, a name, a logger."""

    def __init__(self, name: str = '/dff/server_1') -> None:
        self.name = name
        self.published = []
        self.topic = self.timer_period = None

    def create_publisher(self, _type, topic, _qos):
        self.topic = topic
        return SimpleNamespace(publish=self.published.append)

    def create_timer(self, period, _callback):
        self.timer_period = period

    def get_clock(self):
        return SimpleNamespace(now=lambda: SimpleNamespace(to_msg=lambda: rclpy.time.Time()
                                                           .to_msg()))

    def get_fully_qualified_name(self) -> str:
        return self.name

    def get_name(self) -> str:
        return self.name.rsplit('/', 1)[1]

    def get_logger(self):
        return SimpleNamespace(warning=lambda _text: None)


def test_a_report_becomes_a_diagnostic_status():
    status = to_status('/m/layer_0: ff_layer', 'server_1@host',
                       Report(Level.ERROR, 'configure failed: x', (('state', 'unconfigured'),)))
    assert status.level == DiagnosticStatus.ERROR
    assert (status.name, status.hardware_id, status.message) == (
        '/m/layer_0: ff_layer', 'server_1@host', 'configure failed: x')
    assert [(kv.key, kv.value) for kv in status.values] == [('state', 'unconfigured')]
    for level, raw in ((Level.OK, DiagnosticStatus.OK), (Level.WARN, DiagnosticStatus.WARN),
                       (Level.STALE, DiagnosticStatus.STALE)):
        assert to_status('n', 'h', Report(level, '', ())).level == raw


def test_the_updater_publishes_every_period_and_changes_at_a_bounded_rate():
    node, clock = FakeNode(), FakeClock()
    updater = DiagnosticsUpdater(node, 'server_1@host', clock=clock)
    updater.add('server_container', lambda: Report(Level.OK, 'fine', (('k', 'v'),)))
    assert node.topic == DIAGNOSTICS_TOPIC and node.timer_period == 1.0
    updater.update()                      # the timer
    [array] = node.published
    [status] = array.status
    assert status.name == '/dff/server_1: server_container'
    assert status.hardware_id == 'server_1@host' and status.message == 'fine'
    updater.request()                     # a change right after a publication: waits
    assert len(node.published) == 1
    clock.now += updater.min_interval_s
    updater.request()                     # later: at once
    updater.request()
    assert len(node.published) == 2
    updater.update()                      # the timer publishes regardless
    assert len(node.published) == 3


def test_a_failing_task_is_an_error_entry_not_an_exception():
    node = FakeNode()
    updater = DiagnosticsUpdater(node, 'h', clock=FakeClock())
    updater.add('broken', lambda: 1 / 0)
    updater.add('fine', lambda: Report(Level.OK, 'ok', ()))
    updater.update()
    broken, fine = node.published[0].status
    assert broken.level == DiagnosticStatus.ERROR and 'division' in broken.message
    assert fine.level == DiagnosticStatus.OK


def test_the_container_entry_lists_its_layers_and_memory():
    layers = [SimpleNamespace(get_fully_qualified_name=lambda n=n: n)
              for n in ('/m/layer_1', '/m/layer_0')]
    clock = FakeClock()
    diagnostics = ContainerDiagnostics(FakeNode(), lambda: layers, 'weights', clock=clock)
    clock.now += 7
    report = diagnostics.report()
    values = dict(report.values)
    assert tuple(values) == CONTAINER_KEYS and report.level in (Level.OK, Level.WARN)
    assert values['layers'] == '/m/layer_0, /m/layer_1' and values['layers hosted'] == '2'
    assert values['uptime'] == '7 s' and values['memory rss'].endswith('MiB')
    assert diagnostics.updater.hardware_id.startswith('server_1@')


def test_resident_memory_is_read_from_proc(tmp_path):
    assert process_rss_bytes() > 10 << 20
    assert process_rss_bytes(str(tmp_path / 'missing')) is None


# ----------------------------------------------------------- a real layer node, in-process

@pytest.fixture
def layer(context, tmp_path):
    params = {'model': 'unit', 'layer_index': 0, 'in_features': IN, 'out_features': OUT,
              **ports('/unit/input/train', '/unit/input/infer',
                      train_out='/unit/layer_0/train_out', result='/unit/results',
                      status='/unit/layer_0/status'), 'weight_dir': str(tmp_path),
              'server': 'server_7'}
    node = FFLayerNode('layer_0', namespace='/unit', context=context,
                       parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
    published = []
    node._diagnostics.updater._pub.publish = published.append  # what would go out
    node.published = published
    yield node
    node.destroy_node()
    node._state_machine.destroy_when_not_in_use()


def feed(node: FFLayerNode, array: np.ndarray, kind: int, seq: int, corrupt: bool = False):
    msgs = tensor_to_msgs(array, model='unit', stream='s', source='/test', batch_seq=seq,
                          kind=kind, chunk_elements=20)
    if corrupt:
        msgs[0].crc32 ^= 0xFF
    for msg in msgs:
        node._on_chunk(msg)
    assert node._worker.wait_idle(10)


def batch(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((6, IN)).astype(np.float32)


def report(node: FFLayerNode):
    return node._diagnostics.report()


def test_a_layer_entry_has_every_key_and_names_its_server(layer):
    r = report(layer)
    assert r.level == Level.OK and tuple(k for k, _ in r.values) == LAYER_KEYS
    assert layer._diagnostics.updater.hardware_id.startswith('server_7@')
    layer.trigger_configure()
    layer.trigger_activate()
    values = dict(report(layer).values)
    assert values['state'] == 'active' and values['server'] == 'server_7'
    assert values['model'] == 'unit' and values['memory'] != '-'
    # Adam: weights, gradients, 2 moments and a step's 2 temporaries.
    assert layer_state_bytes(layer._trainer) == (IN * OUT + OUT) * 4 * 6
    # Every transition went out at once (bounded: at least the first of the two).
    assert layer.published


def test_a_corrupt_weight_file_fails_configure_and_the_entry_is_error(layer, tmp_path):
    path = layer_weight_path(tmp_path, 'unit', 0)
    path.parent.mkdir(parents=True)
    path.write_bytes(b'not a weight file')
    layer.trigger_configure()
    assert layer.lifecycle_label == 'unconfigured'
    r = report(layer)
    assert r.level == Level.ERROR and r.message.startswith('configure failed')
    [status] = layer.published[-1].status
    assert status.level == DiagnosticStatus.ERROR  # published on the failure, not 1 s later
    path.unlink()
    layer.trigger_configure()
    assert report(layer).level == Level.OK


def test_a_rejected_stream_is_error_until_a_good_batch(layer):
    layer.trigger_configure()
    layer.trigger_activate()
    feed(layer, batch(0), TensorChunk.KIND_POSITIVE, 0, corrupt=True)
    r = report(layer)
    assert r.level == Level.ERROR and 'rejected 1 tensor' in r.message
    assert dict(r.values)['rejected tensors'] == '1'
    feed(layer, batch(1), TensorChunk.KIND_POSITIVE, 1)
    feed(layer, batch(2), TensorChunk.KIND_NEGATIVE, 1)
    layer._flush_status()  # the worker's idle call, had the executor spun
    r = report(layer)
    assert r.level == Level.OK and dict(r.values)['batches trained'] == '1'


def test_a_processing_failure_is_error_until_configured_again(layer):
    layer.trigger_configure()
    layer.trigger_activate()

    def broken(*_args, **_kwargs):
        raise RuntimeError('simulated numerical failure')

    layer._trainer.step = broken
    feed(layer, batch(0), TensorChunk.KIND_POSITIVE, 0)
    feed(layer, batch(1), TensorChunk.KIND_NEGATIVE, 0)
    assert layer.lifecycle_label == 'unconfigured'
    r = report(layer)
    assert r.level == Level.ERROR and 'simulated numerical failure' in r.message
    layer.trigger_configure()
    assert report(layer).level == Level.OK


def test_a_layer_paused_after_training_warns(layer):
    layer.trigger_configure()
    layer.trigger_activate()
    feed(layer, batch(1), TensorChunk.KIND_POSITIVE, 1)
    feed(layer, batch(2), TensorChunk.KIND_NEGATIVE, 1)
    layer._flush_status()
    report(layer)  # the 1 Hz tick that sees the batch
    layer.trigger_deactivate()
    assert report(layer).level == Level.WARN
    layer.trigger_activate()
    assert report(layer).level == Level.OK
