"""Publisher and subscriber processes for test_transport_ros.py.

    python transport_peers.py send --topic T --count N --elements E --chunk-elements C [--corrupt]
    python transport_peers.py receive --topic T --expect N [--delay-s D]

Each prints one JSON line with its result on stdout; the receiver first prints READY.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
import hashlib
import json
import sys
import time

from dff_lifecycle.ros.environment import configure_environment
from dff_lifecycle.wire.endpoints import TensorReceiver, TensorSender
from dff_lifecycle.wire.messages import tensor_to_msgs
from dff_lifecycle.wire.qos import TENSOR_QOS
from dff_msgs.msg import TensorChunk
import numpy as np
import rclpy
from rclpy.duration import Duration
from rclpy.node import Node

MODEL = 'peers'
STREAM = 'train'


def make_tensor(batch_seq: int, elements: int) -> np.ndarray:
    """Deterministic test tensor (the test regenerates it to compare bits)."""
    return np.random.default_rng(batch_seq).standard_normal(elements, dtype=np.float32)


def digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def wait_for_subscriber(node: Node, publisher, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while publisher.get_subscription_count() == 0:
        if time.monotonic() > deadline:
            raise TimeoutError(f'no subscriber on {publisher.topic_name} after {timeout_s} s')
        rclpy.spin_once(node, timeout_sec=0.05)


def corrupted_stream(elements: int,
                     chunk_elements: int) -> Iterator[tuple[str, list[TensorChunk]]]:
    """One good tensor, one per kind of damage, and a good one again (last)."""
    def chunks(seq: int) -> list[TensorChunk]:
        return tensor_to_msgs(make_tensor(seq, elements), model=MODEL, stream=STREAM,
                              source='sender', batch_seq=seq, kind=TensorChunk.KIND_POSITIVE,
                              chunk_elements=chunk_elements)

    def damaged(seq: int, damage: Callable[[list[TensorChunk]], None]) -> list[TensorChunk]:
        msgs = chunks(seq)
        damage(msgs)
        return msgs

    def flip_value(msgs):
        msgs[1].payload.data[0] += 1.0

    def bad_offset(msgs):
        msgs[1].offset = 10 * elements

    def duplicate(msgs):
        msgs.insert(1, msgs[0])

    def bigger_shape(msgs):
        for msg in msgs:
            msg.shape[0] = elements + 1

    def zero_count(msgs):
        msgs[0].chunk_count = 0

    yield 'good', chunks(0)
    for seq, damage in enumerate([flip_value, bad_offset, duplicate, bigger_shape, zero_count], 1):
        yield damage.__name__, damaged(seq, damage)
    yield 'good', chunks(6)


def phase(text: str, since: float) -> None:
    """Say on stderr how long a phase took: a test that times out shows where it was."""
    print(f'{text} after {time.monotonic() - since:.2f} s', file=sys.stderr, flush=True)


def send(args: argparse.Namespace, node: Node) -> dict:
    begun = time.monotonic()
    publisher = node.create_publisher(TensorChunk, args.topic, TENSOR_QOS)
    wait_for_subscriber(node, publisher)
    phase('subscriber matched', begun)
    started = time.monotonic()
    if args.corrupt:
        for _, msgs in corrupted_stream(args.elements, args.chunk_elements):
            for msg in msgs:
                publisher.publish(msg)
    else:
        sender = TensorSender(publisher, source='sender', chunk_elements=args.chunk_elements,
                              clock=node.get_clock())
        for seq in range(args.count):
            sender.send(make_tensor(seq, args.elements), model=MODEL, stream=STREAM,
                        batch_seq=seq, kind=TensorChunk.KIND_POSITIVE)
    published_s = time.monotonic() - started
    phase('published', begun)
    # KEEP_ALL + reliable: stay alive until the subscriber holds every sample.
    acked = publisher.wait_for_all_acked(Duration(seconds=args.timeout_s))
    phase(f'acknowledged: {acked}', begun)
    return {'publish_s': published_s, 'acked': acked}


def receive(args: argparse.Namespace, node: Node) -> dict:
    receiver = TensorReceiver(node.get_logger())
    tensors: list[dict] = []

    begun = time.monotonic()

    def on_chunk(msg: TensorChunk) -> None:
        time.sleep(args.delay_s)  # a deliberately slow consumer
        tensor = receiver.on_message(msg)
        if tensor is not None:
            phase(f'tensor {tensor.batch_seq} received', begun)
            tensors.append({'batch_seq': tensor.batch_seq, 'shape': list(tensor.array.shape),
                            'sha256': digest(tensor.array)})

    node.create_subscription(TensorChunk, args.topic, on_chunk, TENSOR_QOS)
    print('READY', flush=True)
    deadline = time.monotonic() + args.timeout_s
    while len(tensors) < args.expect and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
    return {'tensors': tensors, 'rejected': receiver.rejected_tensors,
            'ignored_chunks': receiver.ignored_chunks}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('role', choices=['send', 'receive'])
    parser.add_argument('--topic', required=True)
    parser.add_argument('--count', type=int, default=1)
    parser.add_argument('--elements', type=int, default=1 << 20)
    parser.add_argument('--chunk-elements', type=int, default=1 << 19)
    parser.add_argument('--corrupt', action='store_true')
    parser.add_argument('--expect', type=int, default=1)
    parser.add_argument('--delay-s', type=float, default=0.0)
    parser.add_argument('--timeout-s', type=float, default=20.0)
    args = parser.parse_args(argv)
    configure_environment()
    with rclpy.init():
        node = rclpy.create_node(f'transport_peer_{args.role}')
        result = send(args, node) if args.role == 'send' else receive(args, node)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
