"""A container told to stop while a client deletes its layers: each layer goes once, no crash."""
from __future__ import annotations

import threading

from dff_lifecycle.nodes.server_container import ServerContainer
from dff_msgs.msg import LayerSpec
from dff_msgs.srv import CreateLayers, DeleteModel
from layer_ports import ports
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter


def spec(index: int, weight_dir: str) -> LayerSpec:
    params = {'model': 'race', 'layer_index': index, 'in_features': 8, 'out_features': 4,
              'weight_dir': weight_dir,
              **ports(f'/race/in_{index}', f'/race/infer_{index}', result='/race/results',
                      status=f'/race/layer_{index}/status')}
    return LayerSpec(model='race', layer_index=index, layer_type='FFDense',
                     node_name=f'layer_{index}',
                     parameters=[Parameter(k, value=v).to_parameter_msg()
                                 for k, v in params.items()])


@pytest.mark.parametrize('attempt', range(3))
def test_a_delete_served_while_the_container_shuts_down_removes_each_layer_once(
        ros_domain, tmp_path, attempt):
    rclpy.init()  # the default context: the container creates its layers in it
    executor = SingleThreadedExecutor()
    server = ServerContainer('server_race', executor)
    executor.add_node(server)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        created = server._on_create(
            CreateLayers.Request(layers=[spec(i, str(tmp_path)) for i in range(6)]),
            CreateLayers.Response())
        assert created.success, created.message
        delete = server._hosting_call(server._on_delete)
        answers, errors = [], []

        def client_deletes():
            try:
                answers.append(delete(DeleteModel.Request(model='race'),
                                      DeleteModel.Response()))
            except Exception as exc:  # noqa: BLE001 - the failure this test looks for
                errors.append(exc)
        other = threading.Thread(target=client_deletes)
        other.start()
        server.shutdown_layers()  # the main thread, as on SIGINT
        other.join(30)
        assert not errors, errors
        removed = answers[0].removed_nodes
        assert len(removed) == len(set(removed)) and set(removed) <= {
            f'/race/layer_{i}' for i in range(6)}
        assert server._layers == {}
        refused = server._on_create(CreateLayers.Request(layers=[spec(9, str(tmp_path))]),
                                    CreateLayers.Response())
        assert not refused.success and 'shutting down' in refused.message
    finally:
        executor.shutdown()
        server.heartbeat.stop()
        server.destroy_node()
        rclpy.shutdown()
