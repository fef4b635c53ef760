# noqa: D213 (argparse's description is this docstring's first line: __doc__.splitlines()[0])
"""`dff_status`: the health of every FF layer, from its LayerStatus topic.

    dff_status                 # one table after listening for --wait seconds
    dff_status --model mnist_ff --watch

Layer nodes publish LayerStatus on each transition and after every batch; this
tool subscribes to every `.../status` topic of that type and prints one row per
layer: lifecycle state, batches trained, last loss and goodness, rejected
tensors, last error, weight file.
"""
from __future__ import annotations

import argparse
import sys
import threading
import time
from typing import Optional, Sequence

from dff_lifecycle.cli.tool_node import tool_node
from dff_lifecycle.common.text_table import format_table
from dff_lifecycle.transport import LAYER_STATUS_QOS

STATUS_TYPE = 'dff_msgs/msg/LayerStatus'
COLUMNS = ('layer', 'state', 'batches', 'loss', 'g+', 'g-', 'rejected', 'error')


def status_topics(node, model: str) -> list[str]:
    return sorted(name for name, types in node.get_topic_names_and_types()
                  if STATUS_TYPE in types and (not model or name.startswith(f'/{model}/')))


def format_status(latest: dict) -> str:
    rows = []
    for name in sorted(latest):
        m = latest[name]
        rows.append((name, m.state, str(m.batches_seen), f'{m.loss:.4f}',
                     f'{m.goodness_positive:.3f}', f'{m.goodness_negative:.3f}',
                     str(m.rejected_tensors), m.error or '-'))
    return format_table(COLUMNS, rows, rule=False)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog='dff_status', description=__doc__.splitlines()[0])
    parser.add_argument('--model', default='', help="only this model's layers")
    parser.add_argument('--wait', type=float, default=3.0, metavar='S',
                        help='listen this long before printing (default 3)')
    parser.add_argument('--watch', action='store_true', help='print again every --wait seconds')
    args = parser.parse_args(argv)
    from dff_msgs.msg import LayerStatus

    latest: dict = {}
    lock = threading.Lock()

    def remember(msg) -> None:
        with lock:
            latest[msg.node_name] = msg

    with tool_node('dff_status') as node:
        subscribed: set[str] = set()
        while True:
            deadline = time.monotonic() + args.wait
            while time.monotonic() < deadline:  # pick up layers that appear meanwhile
                for topic in set(status_topics(node, args.model)) - subscribed:
                    node.create_subscription(LayerStatus, topic, remember, LAYER_STATUS_QOS)
                    subscribed.add(topic)
                time.sleep(0.2)
            with lock:
                text = format_status(latest) if latest else 'no layer status received'
            print(text, flush=True)
            if not args.watch:
                return 0 if latest else 1
            print()


if __name__ == '__main__':
    sys.exit(main())
