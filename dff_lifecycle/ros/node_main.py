"""
The main loop of a node process, written once: run until SIGINT or SIGTERM.

`stop_event` turns both signals into an event; `run_lifecycle_node` hosts one
managed node nav2-style: with its `autostart` parameter true it is configured and
activated at once (a failed configure ends the process with 2 and the node's one
line reason), and it is shut down (finalized) on the way out, so its
on_shutdown saves and releases what it holds.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Callable, Optional, Sequence

from dff_lifecycle.ros.node_args import check_node_args, NodeUsage
from dff_lifecycle.ros.parameters import ParameterError
from dff_lifecycle.ros.process import ros_process
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn

WAKE_S = 0.5  # how often the main thread looks at the stop event (signals land in between)


def stop_event() -> threading.Event:
    """Return an event that SIGINT and SIGTERM set (install from the main thread)."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def wait_for(stop: threading.Event) -> None:
    while not stop.wait(WAKE_S):
        pass


def run_lifecycle_node(name: str, make_node: Callable[[], LifecycleNode], usage: NodeUsage,
                       argv: Optional[Sequence[str]] = None) -> int:
    """Host the node made by `make_node` until a signal; the process's exit code."""
    argv = sys.argv if argv is None else argv
    code = check_node_args(argv, usage)
    if code is not None:
        return code
    stop = stop_event()
    code = 0
    try:
        with ros_process(argv, shutdown_timeout_s=5.0) as ros:
            node = make_node()
            ros.start(node)  # single-threaded, as the master: see serving/pipeline_scorer.py
            if node.get_parameter('autostart').value:
                code = _autostart(name, node)
            if code == 0:
                print(f'{name} up (pid {os.getpid()})', flush=True)
                wait_for(stop)
            if node._state_machine.current_state[1] != 'finalized':
                node.trigger_shutdown()
            ros.done(code)
    except ParameterError as exc:
        print(f'{name}: error: {exc}', file=sys.stderr, flush=True)
        return 2
    return code


def _autostart(name: str, node: LifecycleNode) -> int:
    """Configure and activate, as nav2's lifecycle manager does with autostart; 0 or 2."""
    if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
        reason = getattr(node, 'configure_error', '') or 'see the node log'
        print(f'{name}: error: configure failed: {reason}', file=sys.stderr, flush=True)
        return 2
    node.trigger_activate()
    return 0
