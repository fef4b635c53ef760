"""The master's `reset` command, nav2's RESET: every layer back to unconfigured, still hosted."""
from __future__ import annotations

import os

from dff_lifecycle.ros.lifecycle_client import LifecycleClient
from dff_lifecycle.ros.service_calls import ClientCache
from dff_processes import REPO, start_master, start_servers, stop_all
import pytest
from ros_client import ros_client

pytestmark = pytest.mark.integration
TINY = REPO / 'test' / 'fixtures' / 'mnist_tiny.yaml'
LAYERS = ['/mnist_tiny/layer_0', '/mnist_tiny/layer_1']


def test_reset_deactivates_and_cleans_up_a_brought_up_model(ros_domain, tmp_path):
    env = os.environ.copy()
    procs = start_servers(env, [tmp_path / 'a', tmp_path / 'b'])
    try:
        up = start_master(env, TINY, servers=2, command='bringup', teardown=False)
        assert up.wait(120) == 0, up.output
        with ros_client() as ros:
            client = LifecycleClient(ClientCache(ros.node), 15.0)
            assert [client.get_state(n)[1] for n in LAYERS] == ['active', 'active']
            reset = start_master(env, TINY, servers=2, command='reset')
            assert reset.wait(120) == 0, reset.output
            assert [client.get_state(n)[1] for n in LAYERS] == ['unconfigured'] * 2
        # Last layer first, as nav2 resets; cleanup saved the weights on each server.
        out = reset.output
        assert out.index(f'teardown   {LAYERS[1]}') < out.index(f'teardown   {LAYERS[0]}')
        saved = sorted(p.name for p in tmp_path.glob('*/mnist_tiny/*.pt'))
        assert saved == ['layer_0.pt', 'layer_1.pt']
    finally:
        stop_all(procs)
