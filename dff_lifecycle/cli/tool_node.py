"""
A hidden helper node for command-line tools, spun in a background thread.

Like ros2cli's direct node: its name starts with an underscore, so it stays out
of `nodes` listings and graph pictures, and it has no parameter services.
Service calls go through dff_lifecycle.ros.service_calls from the main thread.
"""
from __future__ import annotations

from contextlib import contextmanager
import os
import time
from typing import Callable, Iterable, Iterator, Optional, TypeVar

from dff_lifecycle.common.names import HIDDEN_PREFIX, is_hidden, node_names
from dff_lifecycle.ros.process import ros_process
from rclpy.node import Node

T = TypeVar('T')


@contextmanager
def tool_node(prefix: str) -> Iterator[Node]:
    """Yield a hidden node `_<prefix>_<pid>` with its own context, spun until the block ends."""
    with ros_process([], own_context=True) as ros:
        node = Node(f'{HIDDEN_PREFIX}{prefix}_{os.getpid()}', context=ros.context,
                    start_parameter_services=False, enable_rosout=False)
        ros.start(node)
        yield node


def graph_snapshot(node: Node) -> tuple:
    """Everything discovery tells: node, service and topic names."""
    return (sorted(node.get_node_names_and_namespaces()),
            sorted(name for name, _ in node.get_service_names_and_types()),
            sorted(name for name, _ in node.get_topic_names_and_types()))


PARAMETER_SERVICE = 'get_parameters'


def graph_consistent(own: str, nodes: Iterable[str], services: Iterable[str]) -> bool:
    """
    Return True when the node and service listings tell the same story.

    Node names (from each participant's ros_discovery_info sample) and endpoints
    (services) arrive separately, seconds apart on a starved machine. The graph is
    consistent when a visible node besides `own` is known, every visible node already
    has a service of its own, and every `<node>/get_parameters` service belongs to a
    known node.
    """
    visible = {name for name in nodes if name != own and not is_hidden(name)}
    services = set(services)
    if not visible:
        return False
    if any(not any(s.startswith(name.rstrip('/') + '/') for s in services) for name in visible):
        return False
    suffix = '/' + PARAMETER_SERVICE
    owners = {s[:-len(suffix)] for s in services if s.endswith(suffix)}
    return all(owner in visible or owner == own or is_hidden(owner) for owner in owners)


def settle(node: Node, min_s: float, max_s: float, quiet_s: float = 1.0,
           snapshot: Optional[Callable[[], object]] = None) -> None:
    """
    Give discovery time: at least min_s, at most max_s.

    After min_s, wait until the graph is consistent (graph_consistent) and has not
    changed for quiet_s.

    A new participant learns the graph over a few seconds on a busy machine, and there
    is no daemon here that already knows it, as ros2cli's does.
    """
    snapshot = snapshot or (lambda: graph_snapshot(node))
    start = time.monotonic()
    own = node.get_fully_qualified_name()
    last, changed = None, start
    while True:
        now = time.monotonic()
        current = snapshot()
        if current != last:
            last, changed = current, now
        consistent = graph_consistent(
            own, node_names(node.get_node_names_and_namespaces()),
            (name for name, _ in node.get_service_names_and_types()))
        if now - start >= max_s or (now - start >= min_s and consistent
                                    and now - changed >= quiet_s):
            return
        time.sleep(0.1)


def poll(probe: Callable[[], Optional[T]], timeout_s: float, interval_s: float = 0.1
         ) -> Optional[T]:
    """probe() until it returns something other than None, at most timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = probe()
        if found is not None or time.monotonic() >= deadline:
            return found
        time.sleep(interval_s)
