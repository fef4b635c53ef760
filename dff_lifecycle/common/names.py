"""ROS names DFF uses: the /dff namespace, server names, hidden names, joining."""
from __future__ import annotations

import re
from typing import Iterable, Optional

NAMESPACE = '/dff'          # server containers and the master live here
HIDDEN_PREFIX = '_'         # a token starting with it hides a name (ros2 node list, rqt_graph)
SERVER_PREFIX = 'server_'
MASTER_NAME = 'master'
_SERVER = re.compile(r'^server_([1-9][0-9]*)$')


def join(namespace: str, name: str) -> str:
    """
    Return the fully qualified name of `name` in `namespace`.

    join('/', 'a') == '/a', join('/m', 'layer_0') == '/m/layer_0'.
    """
    return f'{namespace.rstrip("/")}/{name}'


def absolute(name: str) -> str:
    """`layer_0` -> `/layer_0`; `/m/layer_0` unchanged (like ros2node's absolute names)."""
    return name if name.startswith('/') else f'/{name}'


def is_hidden(name: str) -> bool:
    """Return True when any token of the name starts with an underscore (rqt_graph's rule)."""
    return any(token.startswith(HIDDEN_PREFIX) for token in name.split('/') if token)


def server_name(index: int) -> str:
    """`server_<index>`, index from 1."""
    if index < 1:
        raise ValueError(f'server indices start at 1, got {index}')
    return f'{SERVER_PREFIX}{index}'


def server_index(name: str) -> Optional[int]:
    """Return the n of `server_<n>` (n >= 1), else None."""
    match = _SERVER.match(name)
    return int(match.group(1)) if match else None


def server_indices(names_and_namespaces: Iterable[tuple[str, str]]) -> list[int]:
    """Sorted indices of the `server_<n>` nodes in the /dff namespace of a graph listing."""
    return sorted(i for name, ns in names_and_namespaces
                  if ns == NAMESPACE and (i := server_index(name)) is not None)


def node_names(names_and_namespaces: Iterable[tuple[str, str]]) -> set[str]:
    """Fully qualified names of a `get_node_names_and_namespaces()` listing."""
    return {join(ns, name) for name, ns in names_and_namespaces}
