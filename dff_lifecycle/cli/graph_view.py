"""
The ROS graph as data: nodes, topics, their endpoints with QoS; text, DOT and a layout.

Pure Python (no rclpy, no matplotlib): `dff_graph` fills a `RosGraph` from a
live node and draws it; tests build one by hand. Like rqt_graph, hidden names
(a token starting with an underscore) and debug topics (/rosout,
/parameter_events) are left out unless asked for.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from typing import Iterable

from dff_lifecycle.common.names import is_hidden

DEBUG_TOPICS = frozenset({'/rosout', '/parameter_events'})
NODE_PREFIX, TOPIC_PREFIX = 'n:', 't:'  # DOT / layout ids: a node and a topic may share a name


@dataclass(frozen=True, order=True)
class Endpoint:
    node: str   # fully qualified node name
    qos: str    # e.g. 'RELIABLE, VOLATILE, KEEP_ALL'


@dataclass(frozen=True)
class Topic:
    name: str
    types: tuple[str, ...]
    publishers: tuple[Endpoint, ...]
    subscribers: tuple[Endpoint, ...]


@dataclass(frozen=True)
class RosGraph:
    nodes: tuple[str, ...]
    topics: tuple[Topic, ...]

    @classmethod
    def build(cls, nodes: Iterable[str], topics: Iterable[Topic]) -> 'RosGraph':
        """Sorted and de-duplicated, so output does not depend on discovery order."""
        clean = [replace(t, publishers=tuple(sorted(set(t.publishers))),
                         subscribers=tuple(sorted(set(t.subscribers))))
                 for t in topics]
        return cls(tuple(sorted(set(nodes))), tuple(sorted(clean, key=lambda t: t.name)))

    def visible(self, include_hidden: bool = False, include_debug: bool = False) -> 'RosGraph':
        """
        Return the graph that rqt_graph shows.

        That is: no hidden nodes or topics, no debug topics, no topic whose every
        endpoint was hidden.
        """
        def shown(name: str) -> bool:
            return include_hidden or not is_hidden(name)

        nodes = [n for n in self.nodes if shown(n)]
        topics = []
        for t in self.topics:
            if not shown(t.name) or (not include_debug and t.name in DEBUG_TOPICS):
                continue
            pubs = tuple(e for e in t.publishers if shown(e.node))
            subs = tuple(e for e in t.subscribers if shown(e.node))
            if pubs or subs:
                topics.append(Topic(t.name, t.types, pubs, subs))
        return RosGraph.build(nodes, topics)

    def edges(self) -> list[tuple[str, str]]:
        """(from, to) ids: publisher node -> topic -> subscriber node."""
        out = []
        for t in self.topics:
            out += [(NODE_PREFIX + e.node, TOPIC_PREFIX + t.name) for e in t.publishers]
            out += [(TOPIC_PREFIX + t.name, NODE_PREFIX + e.node) for e in t.subscribers]
        return sorted(set(out))

    def vertices(self) -> list[str]:
        ids = [NODE_PREFIX + n for n in self.nodes] + [TOPIC_PREFIX + t.name for t in self.topics]
        # endpoints of nodes that left the graph between the two queries
        ids += [v for edge in self.edges() for v in edge]
        return sorted(set(ids))


def format_text(graph: RosGraph) -> str:
    lines = [f'nodes ({len(graph.nodes)}):']
    lines += [f'  {n}' for n in graph.nodes]
    lines.append(f'topics ({len(graph.topics)}):')
    for t in graph.topics:
        lines.append(f'  {t.name} [{", ".join(t.types)}]')
        for title, endpoints in (('publishers', t.publishers), ('subscribers', t.subscribers)):
            if endpoints:
                width = max(len(e.node) for e in endpoints)
                lines.append(f'    {title}:')
                lines += [f'      {e.node.ljust(width)}  {e.qos}' for e in endpoints]
    return '\n'.join(lines)


def namespace_of(name: str) -> str:
    """First token: '/mnist_ff/layer_0/status' -> '/mnist_ff'; '/rosout' -> '/'."""
    tokens = [t for t in name.split('/') if t]
    return f'/{tokens[0]}' if len(tokens) > 1 else '/'


def label_of(vertex: str) -> str:
    prefix = NODE_PREFIX if vertex.startswith(NODE_PREFIX) else TOPIC_PREFIX
    return vertex[len(prefix):]


def to_dot(graph: RosGraph) -> str:
    """Graphviz DOT: nodes as ellipses, topics as boxes, grouped by top-level namespace."""
    types = {TOPIC_PREFIX + t.name: t.types for t in graph.topics}
    groups: dict[str, list[str]] = defaultdict(list)
    for vertex in graph.vertices():
        groups[namespace_of(label_of(vertex))].append(vertex)
    lines = ['digraph ros_graph {', '  rankdir=LR;', '  node [fontname="Helvetica", fontsize=10];',
             '  edge [color="#555555"];']
    for index, (namespace, vertices) in enumerate(sorted(groups.items())):
        indent = '  '
        if namespace != '/':
            lines += [f'  subgraph cluster_{index} {{', f'    label="{namespace}";',
                      '    style="rounded"; color="#999999";']
            indent = '    '
        for vertex in vertices:
            if vertex.startswith(NODE_PREFIX):
                attrs = f'label="{label_of(vertex)}", shape=ellipse'
            else:
                kind = ', '.join(types.get(vertex, ()))
                attrs = f'label="{label_of(vertex)}\\n{kind}", shape=box'
            lines.append(f'{indent}"{vertex}" [{attrs}];')
        if namespace != '/':
            lines.append('  }')
    lines += [f'  "{a}" -> "{b}";' for a, b in graph.edges()]
    lines.append('}')
    return '\n'.join(lines) + '\n'


def layered_layout(graph: RosGraph) -> dict[str, tuple[int, float]]:
    """
    (column, row) of every vertex: a simple Sugiyama-style layering.

    Columns are longest-path ranks from the sources (cycles are broken at the edges
    that close them in a depth-first walk); rows follow the mean row of each vertex's
    predecessors, so chains stay level.
    """
    vertices = graph.vertices()
    successors: dict[str, list[str]] = defaultdict(list)
    for a, b in graph.edges():
        successors[a].append(b)
    acyclic = _drop_back_edges(vertices, successors)
    predecessors: dict[str, list[str]] = defaultdict(list)
    for a, targets in acyclic.items():
        for b in targets:
            predecessors[b].append(a)
    rank: dict[str, int] = {}

    def rank_of(v: str) -> int:
        if v not in rank:
            rank[v] = 1 + max((rank_of(p) for p in predecessors[v]), default=-1)
        return rank[v]

    for v in vertices:
        rank_of(v)
    columns: dict[int, list[str]] = defaultdict(list)
    for v in vertices:
        columns[rank[v]].append(v)
    row: dict[str, float] = {}
    for column in sorted(columns):
        members = columns[column]

        def key(v: str) -> tuple[float, str]:
            rows = [row[p] for p in predecessors[v] if p in row]
            return (sum(rows) / len(rows) if rows else float('inf'), v)

        members.sort(key=key)
        for index, v in enumerate(members):
            row[v] = float(index) - (len(members) - 1) / 2.0
    return {v: (rank[v], row[v]) for v in vertices}


def _drop_back_edges(vertices: list[str], successors: dict[str, list[str]]
                     ) -> dict[str, list[str]]:
    kept: dict[str, list[str]] = defaultdict(list)
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in vertices:
        if start in state:
            continue
        stack = [(start, iter(successors[start]))]
        state[start] = 1
        while stack:
            vertex, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[vertex] = 2
                stack.pop()
            elif state.get(child) == 1:
                continue  # closes a cycle: leave it out of the layering
            else:
                kept[vertex].append(child)
                if child not in state:
                    state[child] = 1
                    stack.append((child, iter(successors[child])))
    return kept
