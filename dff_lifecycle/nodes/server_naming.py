"""
Claim a unique `server_<n>` name, also when several servers start at once.

A server scans the graph for `server_<n>` nodes, picks the next index and
announces it with a short-lived hidden claim node `_claim_<n>_<token>`. After a
settle time it looks again: if a server with that name appeared, or another
claim for the same index has a smaller token, it backs off and tries the next
index. Otherwise the index is its own.
"""
from __future__ import annotations

from contextlib import contextmanager
import random
import re
import secrets
import threading
import time
from typing import Iterable, Iterator, Optional

from dff_lifecycle.common.names import NAMESPACE, server_indices, server_name
from rclpy.node import Node

_CLAIM = re.compile(r'^_claim_([1-9][0-9]*)_([0-9a-f]+)$')


def claims(names_and_namespaces: Iterable[tuple[str, str]]) -> list[tuple[int, str]]:
    """(index, token) of every claim node in a graph listing."""
    return [(int(m.group(1)), m.group(2)) for name, ns in names_and_namespaces
            if ns == NAMESPACE and (m := _CLAIM.match(name))]


def next_free_index(names_and_namespaces: Iterable[tuple[str, str]]) -> int:
    """One above every server and every claim seen."""
    seen = list(names_and_namespaces)
    return max(server_indices(seen) + [i for i, _ in claims(seen)], default=0) + 1


def claim_holds(names_and_namespaces: Iterable[tuple[str, str]], index: int,
                token: str) -> bool:
    """No server has taken `index`, and no rival claim for it has a smaller token."""
    seen = list(names_and_namespaces)
    rivals = [t for i, t in claims(seen) if i == index and t != token]
    return index not in server_indices(seen) and all(token < t for t in rivals)


@contextmanager
def claimed_server_name(settle_s: float = 1.5, attempts: int = 20,
                        stop_event: Optional[threading.Event] = None) -> Iterator[str]:
    """
    Yield `server_<n>`, n one above every server and claim seen.

    Hold the claim until the caller has created its server node (so nobody takes n
    meanwhile).
    """
    token = secrets.token_hex(6)
    scanner = _hidden_node(f'_scan_{token}')
    try:
        time.sleep(settle_s)  # let discovery show the nodes that already exist
        for _ in range(attempts):
            index = next_free_index(scanner.get_node_names_and_namespaces())
            claim = _hidden_node(f'_claim_{index}_{token}')
            try:
                time.sleep(settle_s + random.uniform(0.0, 0.5))
                if claim_holds(scanner.get_node_names_and_namespaces(), index, token):
                    yield server_name(index)
                    return
            finally:
                claim.destroy_node()
            if stop_event is not None and stop_event.is_set():
                break
            time.sleep(random.uniform(0.1, 0.5))
        raise RuntimeError('could not claim a unique server name; set the server_name parameter')
    finally:
        scanner.destroy_node()


def _hidden_node(name: str) -> Node:
    # A leading underscore hides the node from `ros2 node list` and rqt_graph.
    return Node(name, namespace=NAMESPACE, start_parameter_services=False,
                enable_rosout=False)
