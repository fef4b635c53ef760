"""
/diagnostics from a real server container and its layers, and dff_status reading it.

One container hosts two layers. Their entries and the container's arrive with
every key at OK; a malformed chunk stream makes the layer's entry ERROR until a
good batch; a configure that fails on a corrupt weight file makes the other
layer's entry ERROR; dff_status shows the same levels.
"""
from __future__ import annotations

import os
import threading
import time

from dff_lifecycle.common.health import CONTAINER_KEYS, LAYER_KEYS
from dff_lifecycle.core.run.weights import layer_weight_path
from dff_lifecycle.ros.service_calls import call
from dff_lifecycle.wire.messages import tensor_to_msgs
from dff_lifecycle.wire.qos import TENSOR_QOS
from dff_msgs.msg import LayerSpec, TensorChunk
from dff_msgs.srv import CreateLayers
from dff_processes import start_server
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from layer_ports import ports
import numpy as np
import pytest
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile
from ros_client import ros_client
import scenarios

pytestmark = pytest.mark.integration
WIDTH = 16
LAYER_0, LAYER_1 = '/demo/layer_0: ff_layer', '/demo/layer_1: ff_layer'


def spec(index: int) -> LayerSpec:
    params = {'model': 'demo', 'layer_index': index, 'in_features': WIDTH, 'out_features': 8,
              **ports(f'/demo/in_{index}', f'/demo/infer_{index}', result='/demo/results',
                      status=f'/demo/layer_{index}/status')}
    return LayerSpec(model='demo', layer_index=index, layer_type='FFDense',
                     node_name=f'layer_{index}',
                     parameters=[Parameter(k, value=v).to_parameter_msg()
                                 for k, v in params.items()])


class DiagnosticsWatch:
    """The newest DiagnosticStatus of each entry name seen on /diagnostics."""

    def __init__(self, node) -> None:
        self._cond = threading.Condition()
        self.latest: dict[str, DiagnosticStatus] = {}
        node.create_subscription(DiagnosticArray, '/diagnostics', self._on_array,
                                 QoSProfile(depth=10))

    def _on_array(self, msg: DiagnosticArray) -> None:
        with self._cond:
            for status in msg.status:
                self.latest[status.name] = status
            self._cond.notify_all()

    def wait_for(self, name: str, level: bytes, timeout_s: float = 20.0,
                 **values: str) -> DiagnosticStatus:
        """Wait until entry `name` has `level` and these values (key spaces as _)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                status = self.latest.get(name)
                if status is not None and status.level == level and all(
                        dict(_pairs(status)).get(k.replace('_', ' ')) == v
                        for k, v in values.items()):
                    return status
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f'{name}: no {level!r} with {values} within '
                                         f'{timeout_s} s; last: {status}')
                self._cond.wait(left)


def _pairs(status: DiagnosticStatus) -> list[tuple[str, str]]:
    return [(kv.key, kv.value) for kv in status.values]


def send(pub, array: np.ndarray, kind: int, seq: int, corrupt: bool = False) -> None:
    msgs = tensor_to_msgs(array, model='demo', stream='diag', source='/test', batch_seq=seq,
                          kind=kind, chunk_elements=40)
    if corrupt:
        msgs[1].crc32 ^= 1  # checksum mismatch of the whole tensor
    for msg in msgs:
        pub.publish(msg)


def test_layers_and_container_report_levels_on_diagnostics_and_dff_status(ros_domain, tmp_path):
    corrupt = layer_weight_path(tmp_path, 'demo', 1)
    corrupt.parent.mkdir(parents=True)
    corrupt.write_bytes(b'this is no weight file')
    server = start_server(os.environ.copy(), tmp_path)
    container = f'/dff/{server.name}: server_container'
    try:
        with ros_client() as client:
            watch = DiagnosticsWatch(client.node)
            create = client.clients.get(CreateLayers, f'/dff/{server.name}/create_layers')
            created = call(create, CreateLayers.Request(layers=[spec(0), spec(1)]), 15.0)
            assert created.success, created.message
            client.lifecycle.transition('/demo/layer_0', 'configure')
            client.lifecycle.transition('/demo/layer_0', 'activate')

            ok = watch.wait_for(LAYER_0, DiagnosticStatus.OK, state='active')
            assert [k for k, _ in _pairs(ok)] == list(LAYER_KEYS)
            assert ok.hardware_id.startswith(f'{server.name}@')
            box = watch.wait_for(container, DiagnosticStatus.OK, layers_hosted='2')
            assert [k for k, _ in _pairs(box)] == list(CONTAINER_KEYS)
            assert dict(_pairs(box))['layers'] == '/demo/layer_0, /demo/layer_1'
            watch.wait_for(LAYER_1, DiagnosticStatus.OK, state='unconfigured')

            # A malformed chunk stream: ERROR, until a good batch goes through.
            pub = client.node.create_publisher(TensorChunk, '/demo/in_0', TENSOR_QOS)
            client.wait_until(lambda: pub.get_subscription_count() >= 1, what='layer_0 input')
            rng = np.random.default_rng(0)
            good = rng.standard_normal((8, WIDTH)).astype(np.float32)
            send(pub, good, TensorChunk.KIND_POSITIVE, 1, corrupt=True)
            bad = watch.wait_for(LAYER_0, DiagnosticStatus.ERROR, rejected_tensors='1')
            assert 'rejected' in bad.message
            send(pub, good, TensorChunk.KIND_POSITIVE, 2)
            send(pub, rng.standard_normal((8, WIDTH)).astype(np.float32),
                 TensorChunk.KIND_NEGATIVE, 2)
            watch.wait_for(LAYER_0, DiagnosticStatus.OK, batches_trained='1')
            send(pub, good, TensorChunk.KIND_POSITIVE, 3, corrupt=True)
            watch.wait_for(LAYER_0, DiagnosticStatus.ERROR, rejected_tensors='2')

            # A failed transition: configure cannot load the corrupt weight file.
            assert not client.lifecycle.change_state('/demo/layer_1', 'configure')
            failed = watch.wait_for(LAYER_1, DiagnosticStatus.ERROR, state='unconfigured')
            assert failed.message.startswith('configure failed')

            # dff_status reads the same entries.
            result = scenarios.run_tool(os.environ.copy(), 'dff_status', '--wait', '1.5')
            client.node.destroy_publisher(pub)
        assert result.returncode == 0, result.stdout + result.stderr
        layers, containers = result.stdout.split('\n\n')
        levels = {row.split()[0]: row.split()[1:3] for row in layers.splitlines()[1:]}
        assert levels == {'/demo/layer_0': ['active', 'ERROR'],
                          '/demo/layer_1': ['unconfigured', 'ERROR']}, result.stdout
        [row] = containers.splitlines()[1:]
        assert row.split()[:3] == [f'/dff/{server.name}', 'OK', '2'], result.stdout
    finally:
        server.kill()
