"""The rule that says a tool's view of the graph is complete enough to answer."""
from __future__ import annotations

from dff_lifecycle.cli.tool_node import graph_consistent

OWN = '/_dff_tool_1'
LAYER = '/m/layer_0'
LAYER_SERVICES = [f'{LAYER}/get_parameters', f'{LAYER}/get_state']


def test_a_graph_with_only_this_tool_is_not_ready():
    assert not graph_consistent(OWN, [OWN], [])


def test_a_node_whose_services_have_not_arrived_is_waited_for():
    assert not graph_consistent(OWN, [OWN, LAYER, '/m/layer_1'], ['/m/layer_1/get_parameters'])


def test_services_of_a_node_whose_name_has_not_arrived_are_waited_for():
    assert not graph_consistent(OWN, [OWN, '/m/layer_1'],
                                ['/m/layer_1/get_parameters'] + LAYER_SERVICES)


def test_names_and_services_that_agree_are_ready():
    assert graph_consistent(OWN, [OWN, LAYER], LAYER_SERVICES)


def test_hidden_nodes_neither_count_nor_block():
    assert graph_consistent(OWN, [OWN, LAYER, '/_other_tool'],
                            LAYER_SERVICES + ['/_ghost/get_parameters'])


def test_a_root_namespace_node_is_matched():
    assert graph_consistent(OWN, [OWN, '/talker'], ['/talker/get_parameters'])


class Graph:
    """The two graph queries a tool makes: node names, and services with their types."""

    def __init__(self, nodes: list[str], services: list[str]) -> None:
        self.nodes, self.services = nodes, services

    def get_node_names_and_namespaces(self):
        return [(n.rsplit('/', 1)[1], n.rsplit('/', 1)[0] or '/') for n in self.nodes]

    def get_service_names_and_types(self):
        return [(s, ['lifecycle_msgs/srv/GetState']) for s in self.services]


def test_a_named_node_is_found_by_its_service_when_the_graph_lacks_its_name():
    """Node names and endpoints arrive separately; the service is what the call needs."""
    from dff_lifecycle.cli.lifecycle import find_node
    graph = Graph([OWN], [])                       # the name never arrived
    assert find_node(graph, LAYER, False, 0.0, lambda name: name == LAYER) == LAYER
    assert find_node(graph, LAYER, False, 0.0) is None            # no service either
    assert find_node(Graph([OWN, LAYER], [f'{LAYER}/get_state']), LAYER, False, 0.0) == LAYER
    hidden = '/m/_hidden'
    assert find_node(graph, hidden, False, 0.0, lambda name: True) is None
    assert find_node(graph, hidden, True, 0.0, lambda name: True) == hidden
