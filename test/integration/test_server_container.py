"""A real server container process driven through its services and signals."""
from __future__ import annotations

import os
from pathlib import Path
import signal

from dff_lifecycle.core.run.weights import layer_weight_path
from dff_lifecycle.ros.process import STACK_DUMP_SIGNAL
from dff_lifecycle.ros.service_calls import call
from dff_msgs.msg import LayerSpec
from dff_msgs.srv import CreateLayers, DeleteModel, ListLayers, SaveModel
from dff_processes import start_server
from layer_ports import ports
import pytest
from rclpy.parameter import Parameter
from ros_client import ros_client

pytestmark = pytest.mark.integration


def spec(index: int, **overrides) -> LayerSpec:
    params = {'model': 'demo', 'layer_index': index, 'in_features': 16, 'out_features': 8,
              **ports(f'/demo/in_{index}', f'/demo/infer_{index}', result='/demo/results',
                      status=f'/demo/layer_{index}/status'),
              **overrides}
    return LayerSpec(model='demo', layer_index=index, layer_type='FFDense',
                     node_name=f'layer_{index}',
                     parameters=[Parameter(k, value=v).to_parameter_msg()
                                 for k, v in params.items()])


def create(client, server: str, *layers: LayerSpec):
    return call(client.clients.get(CreateLayers, f'/dff/{server}/create_layers'),
                CreateLayers.Request(layers=list(layers)), 15.0)


def test_create_list_save_delete_and_graph_removal(ros_domain, tmp_path):
    server = start_server(os.environ.copy(), tmp_path)
    try:
        with ros_client() as client:
            response = create(client, server.name, spec(0), spec(1))
            assert response.success, response.message
            assert response.node_names == ['/demo/layer_0', '/demo/layer_1']
            client.wait_until(lambda: {'/demo/layer_0', '/demo/layer_1'} <= client.node_names(),
                              what='layer nodes in the graph')
            # Duplicates and unknown parameters are refused as a whole.
            again = create(client, server.name, spec(2), spec(0))
            assert not again.success and 'already exists' in again.message
            bogus = create(client, server.name, spec(3, learning_rate=0.1))
            assert not bogus.success and 'learning_rate' in bogus.message
            listed = call(client.clients.get(ListLayers, f'/dff/{server.name}/list_layers'),
                          ListLayers.Request(model='demo'), 10.0)
            assert [(layer.node_name, layer.state_label) for layer in listed.layers] == [
                ('/demo/layer_0', 'unconfigured'), ('/demo/layer_1', 'unconfigured')]
            # What it may still allocate, for the master's recovery to place layers by.
            total = int(Path('/proc/meminfo').read_text().split()[1]) * 1024  # MemTotal
            assert 0 < listed.memory_room_bytes <= total
            client.lifecycle.transition('/demo/layer_0', 'configure')
            saved = call(client.clients.get(SaveModel, f'/dff/{server.name}/save_model'),
                         SaveModel.Request(model='demo'), 10.0)
            assert saved.success and saved.files == [str(layer_weight_path(tmp_path, 'demo', 0))]
            deleted = call(client.clients.get(DeleteModel, f'/dff/{server.name}/delete_model'),
                           DeleteModel.Request(model='demo', save_weights=True), 10.0)
            assert sorted(deleted.removed_nodes) == ['/demo/layer_0', '/demo/layer_1']
            client.wait_until(lambda: not any(n.startswith('/demo/') for n in client.node_names()),
                              what='deleted layers to leave the graph')
    finally:
        server.kill()


@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM])
def test_signal_saves_configured_layers_and_exits_cleanly(ros_domain, tmp_path, sig):
    server = start_server(os.environ.copy(), tmp_path)
    try:
        with ros_client() as client:
            assert create(client, server.name, spec(0)).success
            client.lifecycle.transition('/demo/layer_0', 'configure')
            client.lifecycle.transition('/demo/layer_0', 'activate')
        path = layer_weight_path(tmp_path, 'demo', 0)
        assert not path.exists()
        os.killpg(server.popen.pid, sig)
        assert server.wait(30) == 0, server.output
        assert path.is_file(), server.output
        assert 'saved weights' in server.output
    finally:
        server.kill()


def test_sigusr1_prints_every_threads_stack_and_the_container_goes_on(ros_domain, tmp_path):
    """`kill -USR1`: where a seemingly stuck process is, without stopping it."""
    server = start_server(os.environ.copy(), tmp_path)
    try:
        os.kill(server.popen.pid, STACK_DUMP_SIGNAL)
        server.wait_for('most recent call first', 15)
        with ros_client() as client:  # still serving
            assert create(client, server.name, spec(0)).success
        os.killpg(server.popen.pid, signal.SIGINT)
        assert server.wait(30) == 0, server.output
        assert 'Thread 0x' in server.output and 'in serve' in server.output, server.output
    finally:
        server.kill()


def test_a_failed_wait_shows_where_the_process_was(ros_domain, tmp_path):
    server = start_server(os.environ.copy(), tmp_path)
    try:
        with pytest.raises(AssertionError) as failed:
            server.wait_for('a line no container prints', 1)
        assert 'most recent call first' in str(failed.value)
    finally:
        server.kill()
