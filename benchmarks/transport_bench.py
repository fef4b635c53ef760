"""Tensor transport throughput between two ROS 2 processes.

Compares, in one run and with the same QoS and Fast DDS transport:
  chunked       TensorSender/TensorReceiver (array.array.frombytes in, np.frombuffer out)
  naive_assign  one message per tensor, `msg.payload.data = ndarray` (per-element copy)
  naive_tolist  one message per tensor, `msg.payload.data = ndarray.tolist()`
and checks the QoS choice: a burst of large tensors to a deliberately slow
subscriber, with TENSOR_QOS (KEEP_ALL) and with a reliable KEEP_LAST(10).

    .venv/bin/python benchmarks/transport_bench.py [--mib-per-case 64] [--sizes-mib 1 4 16]

Prints a table and writes benchmarks/results/transport_<time>.json. MB = 1e6 bytes.
MB/s = bytes / (last tensor complete at the receiver - first publish); steady = the
same from the first complete tensor on; sender = bytes / time spent converting and
publishing. The load average is recorded: other processes on the machine skew results.
"""
from __future__ import annotations

import argparse
import array
import json
import os
from pathlib import Path
import subprocess
import sys
import time
import zlib

import numpy as np

RESULTS_DIR = Path(__file__).resolve().parent / 'results'
MODES = ('chunked', 'naive_assign', 'naive_tolist')
# `bare`: the baseline of --vs-bare, a plain rclpy pair moving std_msgs/Float32MultiArray
# filled the fast way (array.array.frombytes in, np.frombuffer out), same QoS.
CHILD_MODES = (*MODES, 'bare')
QOS_CHOICES = ('tensor', 'keep_last_10')
MIB = 1 << 20
BURST_ELEMENTS = 1 << 20  # 4 MiB tensors, sent as one message each in the QoS check


# ---------------------------------------------------------------- child roles

def _qos(name: str):
    from dff_lifecycle.wire.qos import TENSOR_QOS
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    if name == 'tensor':
        return TENSOR_QOS
    return QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


def _bench_tensor(elements: int) -> np.ndarray:
    return np.random.default_rng(elements).standard_normal(elements, dtype=np.float32)


def role_send(args: argparse.Namespace) -> dict:
    from dff_lifecycle.wire.endpoints import TensorSender
    from dff_msgs.msg import TensorChunk
    import rclpy
    from rclpy.duration import Duration

    tensor = _bench_tensor(args.elements)
    with rclpy.init():
        node = rclpy.create_node('bench_sender')
        if args.mode == 'bare':
            from std_msgs.msg import Float32MultiArray
            publisher = node.create_publisher(Float32MultiArray, args.topic, _qos(args.qos))
        else:
            publisher = node.create_publisher(TensorChunk, args.topic, _qos(args.qos))
        deadline = time.monotonic() + 15.0
        while publisher.get_subscription_count() == 0 and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.05)
        sender = TensorSender(publisher, source='bench', chunk_elements=args.chunk_elements)
        started = time.monotonic()
        for seq in range(args.count):
            if args.mode == 'chunked':
                sender.send(tensor, model='bench', stream='bench', batch_seq=seq, kind=0)
            elif args.mode == 'bare':
                msg = Float32MultiArray()
                payload = array.array('f')
                payload.frombytes(tensor.tobytes())
                msg.data = payload
                publisher.publish(msg)
            else:
                msg = TensorChunk(model='bench', stream='bench', batch_seq=seq, chunk_count=1,
                                  shape=[tensor.size])
                msg.payload.data = tensor if args.mode == 'naive_assign' else tensor.tolist()
                publisher.publish(msg)
        published = time.monotonic()
        acked = publisher.wait_for_all_acked(Duration(seconds=args.timeout_s))
        node.destroy_node()
    return {'started': started, 'publish_s': published - started, 'acked': acked}


def role_receive(args: argparse.Namespace) -> dict:
    from dff_lifecycle.wire.endpoints import TensorReceiver
    from dff_msgs.msg import TensorChunk
    import rclpy

    crcs: list[int] = []
    completed_at: list[float] = []
    last_message = [0.0]
    with rclpy.init():
        node = rclpy.create_node('bench_receiver')
        receiver = TensorReceiver(node.get_logger())

        def on_chunk(msg: TensorChunk) -> None:
            time.sleep(args.delay_s)
            last_message[0] = time.monotonic()
            if args.mode == 'bare':
                array = np.frombuffer(msg.data, dtype=np.float32)
            elif args.mode == 'chunked':
                tensor = receiver.on_message(msg)
                array = None if tensor is None else tensor.array
            else:
                array = np.array(msg.payload.data, dtype=np.float32).reshape(tuple(msg.shape))
            if array is not None:
                completed_at.append(time.monotonic())
                crcs.append(zlib.crc32(array.tobytes()))

        if args.mode == 'bare':
            from std_msgs.msg import Float32MultiArray
            node.create_subscription(Float32MultiArray, args.topic, on_chunk, _qos(args.qos))
        else:  # DFF's receivers take serialized chunks (raw) and read payloads in place
            node.create_subscription(TensorChunk, args.topic, on_chunk, _qos(args.qos),
                                     raw=args.mode == 'chunked')
        print('READY', flush=True)
        deadline = time.monotonic() + args.timeout_s
        while len(crcs) < args.count and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
            if last_message[0] and time.monotonic() - last_message[0] > args.idle_stop_s:
                break  # KEEP_LAST may have dropped the rest
        node.destroy_node()
    return {'completed_at': completed_at, 'crcs': crcs, 'rejected': receiver.rejected_tensors}


# ---------------------------------------------------------------- orchestration

def _bench_env(domain_id: int) -> dict[str, str]:
    from dff_lifecycle.ros.environment import configure_environment
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain_id), ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST',
               PYTHONUNBUFFERED='1')
    return dict(configure_environment(env))


def _transports(env: dict[str, str]) -> str:
    """Name what carries the bytes: a builtin transport set, or the profile file."""
    profile = env.get('FASTDDS_DEFAULT_PROFILES_FILE')
    return env.get('FASTDDS_BUILTIN_TRANSPORTS') or (Path(profile).name if profile else 'default')


def run_case(mode: str, elements: int, count: int, *, chunk_elements: int, qos: str,
             delay_s: float, domain_id: int, timeout_s: float) -> dict:
    """One sender and one receiver process; returns timings and delivery figures."""
    topic = f'/dff_bench/{mode}_{elements}_{qos}_{os.getpid()}'
    common = ['--topic', topic, '--mode', mode, '--elements', str(elements), '--count', str(count),
              '--chunk-elements', str(chunk_elements), '--qos', qos, '--timeout-s', str(timeout_s)]
    env = _bench_env(domain_id)
    receiver = subprocess.Popen([sys.executable, __file__, 'receive', '--delay-s', str(delay_s),
                                 *common], env=env, stdout=subprocess.PIPE, text=True)
    try:
        if receiver.stdout.readline().strip() != 'READY':
            raise RuntimeError('receiver did not start')
        sent = subprocess.run([sys.executable, __file__, 'send', *common], env=env, check=True,
                              stdout=subprocess.PIPE, text=True, timeout=timeout_s + 30)
        received = json.loads(receiver.stdout.readline())
    finally:
        receiver.wait(timeout=timeout_s + 30)
    send_result = json.loads(sent.stdout.strip().splitlines()[-1])
    expected_crc = zlib.crc32(_bench_tensor(elements).tobytes())
    delivered = len(received['crcs'])
    done = received['completed_at']
    seconds = done[-1] - send_result['started'] if done else float('nan')
    # Steady state: from the first complete tensor to the last (no discovery/warm-up lag).
    steady = (delivered - 1) * elements * 4 / 1e6 / (done[-1] - done[0]) if delivered > 1 else 0.0
    return {
        'mode': mode, 'qos': qos, 'tensor_mib': elements * 4 / MIB, 'sent': count,
        'delivered': delivered,
        'bit_identical': all(crc == expected_crc for crc in received['crcs']),
        'rejected': received['rejected'], 'seconds': round(seconds, 4),
        'mb_per_s': round(delivered * elements * 4 / 1e6 / seconds, 1),
        'steady_mb_per_s': round(steady, 1),
        'sender_mb_per_s': round(count * elements * 4 / 1e6 / send_result['publish_s'], 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('role', nargs='?', default='bench', choices=['bench', 'send', 'receive'])
    parser.add_argument('--mib-per-case', type=float, default=64,
                        help='data per size and mode (at least 4 tensors)')
    parser.add_argument('--sizes-mib', type=float, nargs='+', default=[1, 4, 16])
    parser.add_argument('--chunk-elements', type=int, default=None,
                        help='default: dff_lifecycle.wire.header.DEFAULT_CHUNK_ELEMENTS')
    parser.add_argument('--burst', type=int, default=30, help='tensors in the QoS burst check')
    parser.add_argument('--domain-id', type=int, default=None,
                        help='default: a leased one (ros/domain_lease.py)')
    parser.add_argument('--out', type=Path, default=None)
    parser.add_argument('--vs-bare', action='store_true',
                        help='DFF transport against a bare rclpy pair, same sizes and QoS')
    parser.add_argument('--repeats', type=int, default=3, help='runs per case with --vs-bare')
    # child-only options
    parser.add_argument('--topic')
    parser.add_argument('--mode', choices=CHILD_MODES, default='chunked')
    parser.add_argument('--elements', type=int)
    parser.add_argument('--count', type=int)
    parser.add_argument('--qos', choices=QOS_CHOICES, default='tensor')
    parser.add_argument('--delay-s', type=float, default=0.0)
    parser.add_argument('--idle-stop-s', type=float, default=3.0)
    parser.add_argument('--timeout-s', type=float, default=60.0)
    args = parser.parse_args(argv)
    if (min(args.sizes_mib) <= 0 or args.mib_per_case <= 0 or args.repeats < 1
            or args.burst < 1 or (args.chunk_elements is not None and args.chunk_elements < 1)):
        parser.error('--sizes-mib and --mib-per-case must be > 0; --repeats, --burst and '
                     '--chunk-elements >= 1')
    if args.domain_id is None and args.role == 'bench':  # children run in the parent's
        from dff_lifecycle.ros.domain_lease import allocate_domain_id
        args.domain_id = allocate_domain_id()
    if args.chunk_elements is None:
        from dff_lifecycle.wire.header import DEFAULT_CHUNK_ELEMENTS
        args.chunk_elements = DEFAULT_CHUNK_ELEMENTS
    if args.role != 'bench':  # a child: the parent passed the isolated environment
        result = role_send(args) if args.role == 'send' else role_receive(args)
        print(json.dumps(result), flush=True)
        return 0
    return vs_bare(args) if args.vs_bare else bench(args)


def vs_bare(args: argparse.Namespace) -> int:
    """
    Bare pair vs DFF, alternating, `repeats` times each; medians and the ratio.

    Cases per size: bare (one message per tensor), DFF with one chunk per tensor (the
    same message size), and DFF with its default chunks.
    """
    import statistics
    from dff_lifecycle.wire.header import DEFAULT_CHUNK_ELEMENTS
    base = {'domain_id': args.domain_id, 'timeout_s': args.timeout_s, 'qos': 'tensor',
            'delay_s': 0.0}
    rows = []
    for size in args.sizes_mib:
        elements = int(size * MIB / 4)
        count = max(8, round(args.mib_per_case / size))
        cases = {'bare': ('bare', elements), 'dff, 1 chunk': ('chunked', elements),
                 'dff, default chunks': ('chunked', min(elements, DEFAULT_CHUNK_ELEMENTS))}
        runs: dict[str, list[dict]] = {name: [] for name in cases}
        for _ in range(args.repeats):
            for name, (mode, chunk) in cases.items():
                runs[name].append(run_case(mode, elements, count, chunk_elements=chunk, **base))
        bare = statistics.median(r['steady_mb_per_s'] for r in runs['bare'])
        for name, found in runs.items():
            steady = statistics.median(r['steady_mb_per_s'] for r in found)
            rows.append({'tensor_mib': size, 'case': name, 'runs': found,
                         'median_steady_mb_per_s': steady,
                         'median_mb_per_s': statistics.median(r['mb_per_s'] for r in found),
                         'ratio_to_bare': round(steady / bare, 3) if bare else None,
                         'delivered_all': all(r['delivered'] == r['sent'] for r in found),
                         'bit_identical': all(r['bit_identical'] for r in found)})
    print(f'{"tensor":>8} {"case":>20} {"steady MB/s":>12} {"end-to-end":>11} {"vs bare":>8}')
    for row in rows:
        print(f'{row["tensor_mib"]:>6g}Mi {row["case"]:>20} {row["median_steady_mb_per_s"]:>12} '
              f'{row["median_mb_per_s"]:>11} {row["ratio_to_bare"]:>8}')
    out = args.out or RESULTS_DIR / f'transport_vs_bare_{time.strftime("%Y%m%d_%H%M%S")}.json'
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({'setup': {
        'repeats': args.repeats, 'mib_per_case': args.mib_per_case, 'cpus': os.cpu_count(),
        'transports': _transports(_bench_env(args.domain_id)),
        'load_average_1m': os.getloadavg()[0]}, 'rows': rows}, indent=2) + '\n')
    print(f'wrote {out}')
    return 0


def bench(args: argparse.Namespace) -> int:
    load_before = os.getloadavg()[0]
    case = {'chunk_elements': args.chunk_elements, 'domain_id': args.domain_id,
            'timeout_s': args.timeout_s}
    throughput = [run_case(mode, int(size * MIB / 4), max(4, round(args.mib_per_case / size)),
                           qos='tensor', delay_s=0.0, **case)
                  for size in args.sizes_mib for mode in MODES]
    print(f'{"tensor":>8} {"mode":>13} {"delivered":>9} {"MB/s":>8} {"steady":>8} '
          f'{"sender":>8} bit-identical')
    for row in throughput:
        delivered = f'{row["delivered"]}/{row["sent"]}'
        print(f'{row["tensor_mib"]:>6g}Mi {row["mode"]:>13} {delivered:>9} {row["mb_per_s"]:>8} '
              f'{row["steady_mb_per_s"]:>8} {row["sender_mb_per_s"]:>8} {row["bit_identical"]}')
    # QoS check: the receiver sleeps 0.1 s per 4 MiB message (a ~40 MB/s consumer).
    burst_case = dict(case, chunk_elements=BURST_ELEMENTS)
    burst = [run_case('chunked', BURST_ELEMENTS, args.burst, qos=qos, delay_s=0.1, **burst_case)
             for qos in QOS_CHOICES]
    for row in burst:
        print(f'burst {args.burst} x 4 MiB to a slow subscriber, {row["qos"]}: delivered '
              f'{row["delivered"]}/{row["sent"]}, bit identical {row["bit_identical"]}')
    out = args.out or RESULTS_DIR / f'transport_{time.strftime("%Y%m%d_%H%M%S")}.json'
    out.parent.mkdir(parents=True, exist_ok=True)
    setup = {'mib_per_case': args.mib_per_case, 'chunk_elements': args.chunk_elements,
             'cpus': os.cpu_count(), 'load_average_1m': [load_before, os.getloadavg()[0]],
             'transports': _transports(_bench_env(args.domain_id))}
    out.write_text(json.dumps({'setup': setup, 'throughput': throughput, 'qos_burst': burst},
                              indent=2) + '\n')
    print(f'wrote {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
