"""
dff_lifecycle: `ros2 lifecycle` for machines without ros2cli.

    dff_lifecycle nodes [-a] [-c]                  managed nodes, one per line
    dff_lifecycle get [NODE]                       `active [3]`; all nodes: `/n: active [3]`
    dff_lifecycle list NODE [-a]                   transitions from the current state (-a: all)
    dff_lifecycle set NODE TRANSITION              by label (deactivate) or id (4)

It speaks only the standard lifecycle_msgs services (`<node>/get_state`,
`get_available_transitions`, `get_transition_graph`, `change_state`) and prints
what `ros2 lifecycle` prints, so scripts work with either. Errors go to stderr
with exit code 1: `Node not found`, `Unknown transition requested, ...`,
`Transitioning failed`.
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable, Optional, Sequence

from dff_lifecycle.cli.tool_node import poll, settle, tool_node
from dff_lifecycle.common.names import absolute, is_hidden, node_names
from dff_lifecycle.ros.lifecycle_client import GOAL_STATE, LifecycleClient, TransitionInfo
from dff_lifecycle.ros.service_calls import (ClientCache, RESEND_S, ServiceCallError,
                                             ServiceUnavailable)
from rclpy.node import Node

PROG = 'dff_lifecycle'
GET_STATE_TYPE = 'lifecycle_msgs/srv/GetState'


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description='Inspect and drive managed '
                                     '(lifecycle) nodes, like `ros2 lifecycle`.')
    verbs = parser.add_subparsers(dest='verb', required=True, metavar='VERB')

    def verb(name: str, text: str) -> argparse.ArgumentParser:
        sub = verbs.add_parser(name, help=text, description=text)
        sub.add_argument('--spin-time', type=float, default=1.0, metavar='S',
                         help='least time to discover the graph before listing nodes; listing '
                              'waits on until the graph stops changing (default 1.0)')
        sub.add_argument('--timeout', type=float, default=5.0, metavar='S',
                         help='most time to wait for the graph, for a named node to appear '
                              'and for each service response (default 5.0)')
        return sub

    nodes = verb('nodes', 'Output a list of nodes with lifecycle.')
    nodes.add_argument('-a', '--all', action='store_true', help='also hidden nodes')
    nodes.add_argument('-c', '--count-nodes', action='store_true',
                       help='only the number of nodes discovered')

    get = verb('get', 'Get lifecycle state for one or more nodes.')
    get.add_argument('node_name', nargs='?', help='node name; none: every managed node')
    get.add_argument('--include-hidden-nodes', '-a', '--all', action='store_true',
                     help='consider hidden nodes as well')

    lst = verb('list', 'Output a list of available transitions.')
    lst.add_argument('node_name', help='node name')
    lst.add_argument('--include-hidden-nodes', action='store_true',
                     help='consider hidden nodes as well')
    lst.add_argument('-a', '--all', action='store_true',
                     help='every transition of the state machine, not only the available ones')

    st = verb('set', 'Trigger lifecycle state transition.')
    st.add_argument('node_name', help='node name')
    st.add_argument('transition', help='transition label (configure, activate, ...) or id')
    st.add_argument('--include-hidden-nodes', action='store_true',
                    help='consider hidden nodes as well')
    return parser


def lifecycle_node_names(node: Node, include_hidden: bool) -> list[str]:
    """Nodes that offer `<name>/get_state` of type lifecycle_msgs/srv/GetState."""
    services = {name for name, types in node.get_service_names_and_types()
                if GET_STATE_TYPE in types}
    names = node_names(node.get_node_names_and_namespaces())
    return sorted(n for n in names if f'{n}/get_state' in services
                  and (include_hidden or not is_hidden(n)))


def find_node(node: Node, name: str, include_hidden: bool, timeout_s: float,
              reachable: Callable[[str], bool] = lambda _name: False) -> Optional[str]:
    """
    Return the absolute name of a managed node once discovered; None after timeout_s.

    Discovered: listed in the graph with its get_state service, like `ros2 lifecycle`, or its
    get_state service matched (`reachable`). Node names come from each participant's
    ros_discovery_info sample and endpoints from DDS discovery, separately: a graph that
    lacks the name while the service answers (CI saw a brand-new tool miss a node for 15 s)
    is no reason to refuse.
    """
    wanted = absolute(name)
    by_service = include_hidden or not is_hidden(wanted)  # hidden nodes only when asked for

    def probe() -> Optional[str]:
        if wanted in lifecycle_node_names(node, include_hidden):
            return wanted
        return wanted if by_service and reachable(wanted) else None

    return poll(probe, timeout_s)


def listed_nodes(node: Node, include_hidden: bool, args: argparse.Namespace) -> list[str]:
    settle(node, args.spin_time, max(args.spin_time, args.timeout))
    return lifecycle_node_names(node, include_hidden)


def cmd_nodes(node: Node, client: LifecycleClient, args: argparse.Namespace) -> int:
    names = listed_nodes(node, args.all, args)
    if args.count_nodes:
        print(len(names))
    elif names:
        print(*names, sep='\n')
    return 0


def cmd_get(node: Node, client: LifecycleClient, args: argparse.Namespace) -> int:
    if args.node_name:
        name = find_node(node, args.node_name, args.include_hidden_nodes, args.timeout,
                         client.reachable)
        if name is None:
            return not_found()
        targets = [name]
    else:
        targets = listed_nodes(node, args.include_hidden_nodes, args)
    status = 0
    for name in targets:
        try:
            state_id, label = client.get_state(name)
        except ServiceCallError as exc:
            print(f"Exception while calling service of node '{name}': {exc}", file=sys.stderr)
            status = 1
            continue
        prefix = '' if args.node_name else f'{name}: '
        print(f'{prefix}{label} [{state_id}]')
    return status


def cmd_list(node: Node, client: LifecycleClient, args: argparse.Namespace) -> int:
    name = find_node(node, args.node_name, args.include_hidden_nodes, args.timeout,
                     client.reachable)
    if name is None:
        return not_found()
    try:
        transitions = client.transition_graph(name) if args.all else \
            client.available_transitions(name)
    except ServiceCallError as exc:
        print(f"Exception while calling service of node '{name}': {exc}", file=sys.stderr)
        return 1
    for t in transitions:
        print(f'- {t.label} [{t.id}]\n\tStart: {t.start_label}\n\tGoal: {t.goal_label}')
    return 0


def cmd_set(node: Node, client: LifecycleClient, args: argparse.Namespace) -> int:
    name = find_node(node, args.node_name, args.include_hidden_nodes, args.timeout,
                     client.reachable)
    if name is None:
        return not_found()
    try:
        available = client.available_transitions(name)
        chosen = next((t for t in available if t.label == args.transition), None) or \
            next((t for t in available if str(t.id) == args.transition), None)
        if chosen is None:
            print('Unknown transition requested, available ones are:' +
                  ''.join(f'\n- {t.label} [{t.id}]' for t in available), file=sys.stderr)
            return 1
        accepted = changed(client, name, chosen)
    except ServiceCallError as exc:
        print(f"Exception while calling service of node '{name}': {exc}", file=sys.stderr)
        return 1
    if accepted:
        print('Transitioning successful')
        return 0
    print('Transitioning failed', file=sys.stderr)
    return 1


def changed(client: LifecycleClient, name: str, chosen: TransitionInfo) -> bool:
    """
    Ask for the transition once; True when the node accepted it.

    A change of state is never sent twice. If its answer is lost (a server that has not
    discovered this new client yet answers nobody), the node's state says whether it
    happened: the goal state of the transition means it did.
    """
    try:
        return client.change_state(name, chosen.id)
    except ServiceUnavailable:
        raise
    except ServiceCallError:
        goal = GOAL_STATE.get(chosen.label)
        if goal is None or client.get_state(name)[0] != goal:
            raise
        return True


def not_found() -> int:
    print('Node not found', file=sys.stderr)
    return 1


VERBS = {'nodes': cmd_nodes, 'get': cmd_get, 'list': cmd_list, 'set': cmd_set}


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    with tool_node('dff_lifecycle') as node:
        client = LifecycleClient(ClientCache(node), timeout_s=args.timeout, resend_s=RESEND_S)
        return VERBS[args.verb](node, client, args)


if __name__ == '__main__':
    sys.exit(main())
