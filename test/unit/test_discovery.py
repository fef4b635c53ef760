"""The master's discovery of server containers: enough of them, and never two of one name."""
from __future__ import annotations

from dff_lifecycle.master import deployer as deployer_module
from dff_lifecycle.master.deployer import Deployer, DeployerSettings
from dff_lifecycle.master.errors import PipelineError
import pytest


class Graph:
    """What rclpy's graph queries answer, from a list of server names."""

    def __init__(self, names):
        self.names = names

    def get_node_names_and_namespaces(self):
        return [(name, '/dff') for name in self.names] + [('layer_0', '/model')]

    def get_service_names_and_types(self):
        return [(f'/dff/{name}/create_layers', ['dff_msgs/srv/CreateLayers'])
                for name in set(self.names)]


def deployer(names, servers=2, timeout_s=30.0):
    return Deployer(Graph(names), clients=None,
                    settings=DeployerSettings(servers, 1.0, timeout_s))


def test_the_servers_found_are_returned_once_each_in_order():
    assert deployer(['server_2', 'server_1']).discover_servers() == ['server_1', 'server_2']


def test_two_live_servers_of_one_name_are_another_run_on_this_domain(monkeypatch):
    clock = iter(range(0, 1000, 2))  # two seconds a poll
    monkeypatch.setattr(deployer_module.time, 'monotonic', lambda: next(clock))
    monkeypatch.setattr(deployer_module.time, 'sleep', lambda _s: None)
    monkeypatch.setenv('ROS_DOMAIN_ID', '7')
    with pytest.raises(PipelineError, match='2 server containers are named server_2 on '
                                            'ROS_DOMAIN_ID 7: another run shares this domain'):
        deployer(['server_1', 'server_2', 'server_2']).discover_servers()


def test_a_lingering_twin_for_a_moment_is_waited_out(monkeypatch):
    graph = Graph(['server_1', 'server_2', 'server_2'])
    polls = []

    def sleep(_s):
        polls.append(1)
        if len(polls) == 2:  # the old participant's lease ran out
            graph.names = ['server_1', 'server_2']
    monkeypatch.setattr(deployer_module.time, 'sleep', sleep)
    found = Deployer(graph, None, DeployerSettings(2, 1.0, 30.0)).discover_servers()
    assert found == ['server_1', 'server_2']
