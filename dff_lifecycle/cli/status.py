# noqa: D213 (argparse's description is this docstring's first line: __doc__.splitlines()[0])
"""`dff_status`: the health of every FF layer and server container, from /diagnostics.

    dff_status                 # layers, then containers, after listening for --wait seconds
    dff_status --model mnist_ff --watch

Layer nodes and server containers publish diagnostic_msgs/DiagnosticArray on
/diagnostics once a second and on each change: the entries rqt_robot_monitor
shows, with the levels of common/health.py. This tool prints one row per layer
(level, lifecycle state, batches trained, last loss and goodness, rejected
tensors, message) and, without --model, one per container (level, layers
hosted, resident memory, uptime, message). An entry not refreshed for
STALE_AFTER_S shows as STALE.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
import sys
import threading
import time
from typing import Callable, Optional, Sequence

from dff_lifecycle.cli.arguments import positive_seconds
from dff_lifecycle.cli.tool_node import tool_node
from dff_lifecycle.common import health
from dff_lifecycle.common.health import CONTAINER_TASK, LAYER_TASK, Level, split_entry_name
from dff_lifecycle.common.text_table import format_table

DIAGNOSTICS_TOPIC = '/diagnostics'
STALE_AFTER_S = 5.0      # five missed periods, as the aggregator's default timeout
EXTRA_WAIT_S = 2.5       # past --wait, for publishers discovered but not heard from yet
LAYER_COLUMNS = ('layer', 'state', 'level', 'batches', 'loss', 'g+', 'g-', 'rejected',
                 'message')
CONTAINER_COLUMNS = ('container', 'level', 'layers', 'rss', 'uptime', 'message')


@dataclass(frozen=True)
class Entry:
    """One DiagnosticStatus as received: level, message, values, when."""

    level: Level
    message: str
    values: dict
    received_at: float

    def shown_level(self, now: float) -> str:
        return (Level.STALE if now - self.received_at > STALE_AFTER_S else self.level).name


class Latest:
    """The newest layer and container entries, keyed by node; filled from any thread."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.layers: dict[str, Entry] = {}
        self.containers: dict[str, Entry] = {}

    def on_array(self, msg) -> None:
        now = self._clock()
        with self._lock:
            for status in msg.status:
                node, task = split_entry_name(status.name)
                table = {LAYER_TASK: self.layers, CONTAINER_TASK: self.containers}.get(task)
                if table is not None and node:
                    table[node] = Entry(_level(status.level), status.message,
                                        {kv.key: kv.value for kv in status.values}, now)

    def heard(self) -> set[str]:
        with self._lock:
            return set(self.layers) | set(self.containers)

    def snapshot(self, model: str = '') -> tuple[dict[str, Entry], dict[str, Entry]]:
        with self._lock:
            layers = {n: e for n, e in self.layers.items()
                      if not model or n.startswith(f'/{model}/')}
            return layers, ({} if model else dict(self.containers))


def _level(raw) -> Level:
    try:
        return Level(raw[0] if isinstance(raw, (bytes, bytearray)) else int(raw))
    except (ValueError, IndexError):
        return Level.ERROR  # not a level diagnostic_msgs defines


def format_status(layers: dict[str, Entry], containers: dict[str, Entry], now: float) -> str:
    """Return the layer table and, when there are any, the container table below it."""
    tables = []
    if layers:
        rows = []
        for name in sorted(layers):
            e, v = layers[name], layers[name].values
            rows.append((name, v.get(health.STATE, '?'), e.shown_level(now),
                         v.get(health.BATCHES, '-'), v.get(health.LOSS, '-'),
                         v.get(health.GOODNESS_POSITIVE, '-'),
                         v.get(health.GOODNESS_NEGATIVE, '-'), v.get(health.REJECTED, '-'),
                         e.message or '-'))
        tables.append(format_table(LAYER_COLUMNS, rows, rule=False))
    if containers:
        rows = [(name, e.shown_level(now), e.values.get(health.LAYERS_HOSTED, '-'),
                 e.values.get(health.RSS, '-'), e.values.get(health.UPTIME, '-'),
                 e.message or '-')
                for name, e in sorted(containers.items())]
        tables.append(format_table(CONTAINER_COLUMNS, rows, rule=False))
    return '\n\n'.join(tables)


def unheard_publishers(node, latest: Latest) -> set[str]:
    """Nodes publishing /diagnostics that have not reported here yet (this tool excluded)."""
    own = node.get_fully_qualified_name()
    publishers = {f'{i.node_namespace.rstrip("/")}/{i.node_name}'
                  for i in node.get_publishers_info_by_topic(DIAGNOSTICS_TOPIC)}
    return publishers - latest.heard() - {own}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog='dff_status', description=__doc__.splitlines()[0])
    parser.add_argument('--model', default='', help="only this model's layers")
    parser.add_argument('--wait', type=positive_seconds, default=3.0, metavar='S',
                        help='listen this long before printing (default 3)')
    parser.add_argument('--watch', action='store_true', help='print again every --wait seconds')
    args = parser.parse_args(argv)
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile

    latest = Latest()
    with tool_node('dff_status') as node:
        # The publishers' QoS (reliable, volatile, depth 10): what an aggregator asks for.
        node.create_subscription(DiagnosticArray, DIAGNOSTICS_TOPIC, latest.on_array,
                                 QoSProfile(depth=10))
        while True:
            time.sleep(args.wait)
            deadline = time.monotonic() + EXTRA_WAIT_S
            while unheard_publishers(node, latest) and time.monotonic() < deadline:
                time.sleep(0.1)  # discovered late: its next report is at most a period away
            layers, containers = latest.snapshot(args.model)
            text = format_status(layers, containers, time.monotonic())
            print(text or 'no diagnostics received', flush=True)
            if not args.watch:
                return 0 if layers or containers else 1
            print()


if __name__ == '__main__':
    sys.exit(main())
