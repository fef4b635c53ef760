"""
dff_graph: the live ROS graph as text, Graphviz DOT and a PNG (rqt_graph without a display).

    dff_graph [--wait S] [--dot FILE] [--png FILE] [--all] [--debug]

Lists every node, every topic with its type, and each topic's publishers and
subscribers with their QoS (reliability, durability). Hidden nodes
and topics (a name token starting with `_`) and the debug topics /rosout and
/parameter_events are left out, as in rqt_graph; --all and --debug show them.
The PNG comes from Graphviz `dot` when it is installed, else from matplotlib
with a simple layered layout (publishers left of their topics, subscribers right).
"""
from __future__ import annotations

import argparse
from pathlib import Path
import shutil
import subprocess
import sys
from typing import Optional, Sequence

from dff_lifecycle.cli.arguments import non_negative_seconds, output_file
from dff_lifecycle.cli.graph_view import (Endpoint, format_text, label_of, layered_layout,
                                          NODE_PREFIX, RosGraph, to_dot, Topic)
from dff_lifecycle.cli.tool_node import settle, tool_node
from dff_lifecycle.common.names import join
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile

PROG = 'dff_graph'


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description='List the live ROS graph and draw it.')
    parser.add_argument('--wait', type=non_negative_seconds, default=1.0, metavar='S',
                        help='least discovery time; then it waits until the graph stops '
                             'changing (default 1.0)')
    parser.add_argument('--timeout', type=non_negative_seconds, default=10.0, metavar='S',
                        help='most discovery time (default 10.0)')
    parser.add_argument('--dot', type=output_file, default=None, metavar='FILE',
                        help='write Graphviz DOT here')
    parser.add_argument('--png', type=output_file, default=None, metavar='FILE',
                        help='draw a PNG here')
    parser.add_argument('--all', action='store_true', help='include hidden nodes and topics')
    parser.add_argument('--debug', action='store_true',
                        help='include /rosout and /parameter_events')
    return parser


def qos_text(qos: QoSProfile) -> str:
    """
    Describe the QoS: reliability and durability; history and depth only when known.

    Discovery does not carry those two for remote endpoints: `ros2 topic info -v` says
    UNKNOWN.
    """
    parts = [qos.reliability.name, qos.durability.name]
    if qos.history == HistoryPolicy.KEEP_LAST:
        parts.append(f'KEEP_LAST ({qos.depth})')
    elif qos.history == HistoryPolicy.KEEP_ALL:
        parts.append('KEEP_ALL')
    return ', '.join(parts)


def _endpoints(infos) -> tuple[Endpoint, ...]:
    return tuple(Endpoint(join(i.node_namespace, i.node_name), qos_text(i.qos_profile))
                 for i in infos)


def read_graph(node: Node) -> RosGraph:
    nodes = [join(ns, n) for n, ns in node.get_node_names_and_namespaces()]
    topics = [Topic(name, tuple(types), _endpoints(node.get_publishers_info_by_topic(name)),
                    _endpoints(node.get_subscriptions_info_by_topic(name)))
              for name, types in node.get_topic_names_and_types()]
    return RosGraph.build(nodes, topics)


def write_png(graph: RosGraph, path: Path) -> str:
    """Draw with Graphviz when available, else matplotlib; returns which one drew it."""
    dot = shutil.which('dot')
    if dot:
        result = subprocess.run([dot, '-Tpng', '-o', str(path)], input=to_dot(graph),
                                text=True, capture_output=True, timeout=60)
        if result.returncode == 0:
            return 'graphviz'
        print(f'{PROG}: dot failed ({result.stderr.strip()}); drawing with matplotlib',
              file=sys.stderr)
    draw_layered(graph, path)
    return 'matplotlib'


def draw_layered(graph: RosGraph, path: Path) -> None:
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib.patches import FancyBboxPatch
    import matplotlib.pyplot as plt

    layout = layered_layout(graph)
    columns = max((c for c, _ in layout.values()), default=0) + 1
    rows = max((sum(1 for c2, _ in layout.values() if c2 == c) for c in range(columns)), default=1)
    x_step, y_step = 3.2, 0.9
    fig, ax = plt.subplots(figsize=(max(6.0, 2.9 * columns), max(3.0, 0.75 * rows + 1.0)))
    box_w, box_h = 2.7, 0.5
    centre = {v: (c * x_step, -r * y_step) for v, (c, r) in layout.items()}
    for a, b in graph.edges():
        (xa, ya), (xb, yb) = centre[a], centre[b]
        ax.annotate('', xy=(xb - box_w / 2, yb), xytext=(xa + box_w / 2, ya),
                    arrowprops={'arrowstyle': '->', 'color': '#555555', 'lw': 0.8,
                                'shrinkA': 0, 'shrinkB': 0,
                                'connectionstyle': 'arc3,rad=0.0'})
    for vertex, (x, y) in centre.items():
        is_node = vertex.startswith(NODE_PREFIX)
        ax.add_patch(FancyBboxPatch(
            (x - box_w / 2, y - box_h / 2), box_w, box_h,
            boxstyle='round,pad=0.02,rounding_size=0.25' if is_node else 'square,pad=0.02',
            facecolor='#dbe9f6' if is_node else '#fdf1d6', edgecolor='#333333', lw=0.8))
        ax.text(x, y, label_of(vertex), ha='center', va='center', fontsize=7)
    xs = [x for x, _ in centre.values()] or [0.0]
    ys = [y for _, y in centre.values()] or [0.0]
    ax.set_xlim(min(xs) - box_w, max(xs) + box_w)
    ax.set_ylim(min(ys) - box_h * 2, max(ys) + box_h * 2)
    ax.set_axis_off()
    ax.set_title('ROS graph (rounded: nodes, square: topics)', fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    with tool_node('dff_graph') as node:
        settle(node, args.wait, max(args.wait, args.timeout), snapshot=lambda: read_graph(node))
        graph = read_graph(node).visible(include_hidden=args.all, include_debug=args.debug)
    print(format_text(graph))
    if args.dot:
        args.dot.parent.mkdir(parents=True, exist_ok=True)
        args.dot.write_text(to_dot(graph), encoding='utf-8')
        print(f'wrote {args.dot}')
    if args.png:
        args.png.parent.mkdir(parents=True, exist_ok=True)
        how = write_png(graph, args.png)
        if not args.png.is_file():
            print(f'{PROG}: error: {args.png} was not written ({how})', file=sys.stderr)
            return 1
        print(f'wrote {args.png} ({how})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
