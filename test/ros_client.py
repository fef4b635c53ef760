"""An rclpy node inside the test process, spun in a background thread.

Tests use it the way an operator's tools would: lifecycle services, the
server containers' services, topics.
"""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator

import rclpy
from rclpy.context import Context
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node

from dff_lifecycle.lifecycle_client import LifecycleClient
from dff_lifecycle.ros_calls import ClientCache


class RosClient:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.clients = ClientCache(node)
        self.lifecycle = LifecycleClient(self.clients, timeout_s=15.0)

    def node_names(self) -> set[str]:
        return {f'{ns.rstrip("/")}/{name}' for name, ns in self.node.get_node_names_and_namespaces()}

    def wait_until(self, condition: Callable[[], bool], timeout_s: float = 30.0,
                   what: str = 'condition') -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f'timed out after {timeout_s} s waiting for {what}')
            time.sleep(0.1)


@contextmanager
def ros_client(name: str = 'dff_test_client') -> Iterator[RosClient]:
    """Call with the test's ROS environment already in os.environ."""
    context = Context()
    rclpy.init(context=context)
    node = Node(name, context=context)
    executor = MultiThreadedExecutor(num_threads=2, context=context)
    executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    try:
        yield RosClient(node)
    finally:
        executor.shutdown(timeout_sec=2.0)
        thread.join(5.0)
        node.destroy_node()
        rclpy.shutdown(context=context)
