"""dff_lifecycle against layer nodes hosted by a real server container.

The layers are created through the container's create_layers service, so every
verb sees a node from its first state; the checks live in test/scenarios.py.
"""
from __future__ import annotations

from dff_processes import start_server, stop_all
import pytest
from ros_client import ros_client
from ros_env import isolated_ros_env  # noqa: F401 - fixture
import scenarios

pytestmark = pytest.mark.integration


def test_nodes_get_list_set_like_ros2_lifecycle(ros_domain, tmp_path):
    env = isolated_ros_env(ros_domain)
    server = start_server(env, tmp_path / 'weights', name='server_1')
    try:
        with ros_client('_dff_test_client') as ros:
            created = scenarios.create_layers(ros.node)
            assert sorted(created) == sorted([*scenarios.TINY_LAYERS, scenarios.BROKEN_LAYER])
            scenarios.check_lifecycle_cli(env)
    finally:
        stop_all([server])
