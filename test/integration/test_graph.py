"""dff_graph against a real server container hosting two active layer nodes."""
from __future__ import annotations

from dff_processes import start_server, stop_all
import pytest
from ros_client import ros_client
from ros_env import isolated_ros_env  # noqa: F401 - fixture
import scenarios

pytestmark = pytest.mark.integration


def test_graph_lists_nodes_topics_qos_and_draws_it(ros_domain, tmp_path):
    env = isolated_ros_env(ros_domain)
    server = start_server(env, tmp_path / 'weights', name='server_1')
    try:
        with ros_client('_dff_test_client') as ros:  # hidden: must not show in the graph
            scenarios.create_layers(ros.node)
            scenarios.bring_up(ros.node, list(scenarios.TINY_LAYERS))
            scenarios.check_graph(env, tmp_path)
    finally:
        stop_all([server])
