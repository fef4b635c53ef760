"""An rclpy node inside the test process, spun in a background thread.

Tests use it the way an operator's tools would: lifecycle services, the
server containers' services, topics.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

from dff_lifecycle.common.names import node_names
from dff_lifecycle.ros.lifecycle_client import LifecycleClient
from dff_lifecycle.ros.process import ros_process
from dff_lifecycle.ros.service_calls import ClientCache
from dff_lifecycle.testing.waiting import wait_until
from rclpy.node import Node


class RosClient:

    def __init__(self, node: Node) -> None:
        self.node = node
        self.clients = ClientCache(node)
        self.lifecycle = LifecycleClient(self.clients, timeout_s=15.0)

    def node_names(self) -> set[str]:
        return node_names(self.node.get_node_names_and_namespaces())

    def wait_until(self, condition: Callable[[], bool], timeout_s: float = 30.0,
                   what: str = 'condition') -> None:
        wait_until(condition, timeout_s, what, poll_s=0.1)


@contextmanager
def ros_client(name: str = 'dff_test_client') -> Iterator[RosClient]:
    """Call with the test's ROS environment already in os.environ."""
    with ros_process([], own_context=True) as ros:
        node = Node(name, context=ros.context)
        ros.start(node, threads=2)
        yield RosClient(node)
