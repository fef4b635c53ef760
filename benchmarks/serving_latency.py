"""
Served predictions at camera rate: latency p50 / p99 and throughput, against one process.

    python benchmarks/serving_latency.py [--config params/models/mnist_classes.yaml]
        [--images 300] [--rate 30] [--cases one_process local pipeline cluster]

The model's weights are its seeded initialisation (latency does not depend on what the
layers learnt), written where each case reads them. dff_image_publisher plays the MNIST
or CIFAR-10 test set at --rate onto `image` (camera QoS: best effort, keep last), and a
listener process stamps each Prediction's arrival against its image's header stamp
(one clock: every process is on this machine, namespaces included). Cases:

- one_process: decode + standardise + score each image in this process, no ROS
  (the baseline: what the model costs);
- local: dff_infer with a local copy of the weights;
- pipeline: dff_infer -p mode:=pipeline over two server containers on this host;
- cluster: the same on two emulated devices (dff_cluster, needs root: --cpus per
  device, --link rate), the publisher, dff_infer and the listener on the master's.

Writes benchmarks/results/serving_latency_<stamp>.json and prints a table.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from dff_lifecycle.core.config import load_layer_config, load_model_config
from dff_lifecycle.core.data.datasets import load_dataset
from dff_lifecycle.core.data.image_codec import decode_image, encode_image, ModelInput
from dff_lifecycle.core.data.input_stats import save_input_stats, stats_of
from dff_lifecycle.core.ff.network import FFNetwork
from dff_lifecycle.core.run.experiment import save_layer_weights
from dff_lifecycle.core.run.predictor import LocalPredictor
from dff_lifecycle.ros.domain_lease import allocate_domain_id
from dff_lifecycle.serving.infer_node import camera_shape
from portable import REPO, scrub
import torch

RESULTS = REPO / 'benchmarks' / 'results'
BIN = Path(sys.executable).parent
LAYERS = REPO / 'params' / 'layers.yaml'
CASES = ('one_process', 'local', 'pipeline', 'cluster')
QUIET_S = 5.0  # the listener stops this long after the last answer


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def summary(latencies_ms: list[float], images: int, seconds: float) -> dict:
    return {'answered': len(latencies_ms), 'images': images,
            'p50_ms': round(percentile(latencies_ms, 50), 2) if latencies_ms else None,
            'p99_ms': round(percentile(latencies_ms, 99), 2) if latencies_ms else None,
            'mean_ms': round(statistics.fmean(latencies_ms), 2) if latencies_ms else None,
            'answers_per_s': round(len(latencies_ms) / seconds, 2) if seconds else None}


# ------------------------------------------------------------------ the listener process
def listen(count: int, out: Path, timeout_s: float) -> int:
    """Subscribe to image and prediction; write each answer's latency (ms) to `out`."""
    from dff_lifecycle.ros.process import ros_process
    from dff_msgs.msg import Prediction
    from rclpy.node import Node
    from rclpy.qos import qos_profile_sensor_data

    latencies: list[float] = []
    done = threading.Event()
    first_last: list[float] = []

    def on_prediction(msg: Prediction) -> None:
        now = time.time()
        sent = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        latencies.append((now - sent) * 1e3)
        first_last.append(now)
        if len(latencies) >= count:
            done.set()

    with ros_process([], own_context=True) as ros:
        node = Node('serving_latency_listener', context=ros.context)
        node.create_subscription(Prediction, 'prediction', on_prediction, qos_profile_sensor_data)
        ros.start(node)
        print('listener up', flush=True)
        # Best effort may lose an answer: stop QUIET_S after the last one, or at the count.
        deadline = time.monotonic() + timeout_s
        while not done.wait(0.5) and time.monotonic() < deadline:
            if first_last and time.time() - first_last[-1] > QUIET_S:
                break
        ros.done(0)
    seconds = (first_last[-1] - first_last[0]) if len(first_last) > 1 else 0.0
    out.write_text(json.dumps({'latencies_ms': latencies, 'seconds': seconds}))
    return 0


# ------------------------------------------------------------------ the cases
class Bench:
    """The model, its weights and test images, and the ROS domain of one invocation."""

    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args, self.tmp = args, tmp
        self.model = load_model_config(args.config, load_layer_config(LAYERS))
        self.data = load_dataset(self.model.dataset, None, train_limit=1000,
                                 test_limit=args.images)
        self.weights = tmp / 'weights'  # <weights>/<model>/layer_<i>.pt + input_stats.json
        network = FFNetwork.from_model_config(self.model)
        paths = save_layer_weights(network, self.model, self.weights)
        save_input_stats(paths[0].parent, stats_of(self.data))
        self.env = {**os.environ, 'ROS_DOMAIN_ID': str(allocate_domain_id()),
                    'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST', 'PYTHONUNBUFFERED': '1'}

    def one_process(self) -> dict:
        predictor = LocalPredictor(self.model, self.weights / self.model.name)
        make = ModelInput(camera_shape(self.model), stats_of(self.data),
                          flat=self.model.dataset == 'mnist')
        shape = self.data.image_shape
        mean = torch.tensor(self.data.mean).view(-1, 1, 1)
        std = torch.tensor(self.data.std).view(-1, 1, 1)
        messages = [encode_image(self.data.x_test[i].reshape(shape) * std + mean)
                    for i in range(len(self.data.x_test))]
        latencies = []
        started = time.perf_counter()
        for encoding, height, width, step, data in messages:
            t0 = time.perf_counter()
            predictor.scores(make([decode_image(encoding, height, width, step, data)]))
            latencies.append((time.perf_counter() - t0) * 1e3)
        return summary(latencies, len(messages), time.perf_counter() - started)

    def proc(self, argv: list[str], name: str, prefix: list[str] = ()) -> subprocess.Popen:
        log = open(self.tmp / f'{name}.log', 'w')
        return subprocess.Popen([*prefix, *argv], env=self.env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)

    def wait_line(self, name: str, text: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        path = self.tmp / f'{name}.log'
        while time.monotonic() < deadline:
            if path.exists() and text in path.read_text():
                return
            time.sleep(0.2)
        raise RuntimeError(f'{name}: no {text!r} within {timeout_s} s:\n'
                           + scrub(path.read_text()[-2000:], [self.tmp]))

    def served(self, mode: str, servers: int = 0, prefix_of=None) -> dict:
        """Servers (if any), dff_infer, the listener, then the publisher; the answers."""
        def on(member: str) -> list[str]:
            return prefix_of(member) if prefix_of else []
        procs = []
        try:
            for i in range(servers):
                name = f'server_{i + 1}'
                procs.append(self.proc([str(BIN / 'server_container'), '--ros-args',
                                        '-p', f'server_name:={name}', '-p',
                                        f'weight_dir:={self.weights}', '-p', 'torch_threads:=1'],
                                       f'{mode}_{name}', on(f'd{i + 1}')))
                self.wait_line(f'{mode}_{name}', 'server container /dff/', 60)
            procs.append(self.proc([str(BIN / 'dff_infer'), '--ros-args',
                                    '-p', f'model_config:={self.args.config}',
                                    '-p', f'weights:={self.weights}', '-p', f'mode:={mode}',
                                    '-p', f'servers:={max(1, servers)}', '-p', 'autostart:=true'],
                                   f'{mode}_infer', on('master')))
            self.wait_line(f'{mode}_infer', 'dff_infer up', 120)
            result_file = self.tmp / f'{mode}_latency.json'
            procs.append(self.proc([sys.executable, __file__, '--listen',
                                    str(self.args.images), '--out', str(result_file)],
                                   f'{mode}_listener', on('master')))
            self.wait_line(f'{mode}_listener', 'listener up', 60)
            publisher = self.proc([str(BIN / 'dff_image_publisher'), '--ros-args',
                                   '-p', f'source:={self.model.dataset}',
                                   '-p', f'count:={self.args.images}',
                                   '-p', f'rate:={float(self.args.rate)}',
                                   '-p', 'wait_for_subscribers:=1'],
                                  f'{mode}_publisher', on('master'))
            publisher.wait(self.args.images / self.args.rate + 120)
            procs[-1].wait(QUIET_S + 60)
        finally:
            for proc in reversed(procs):
                if proc.poll() is None:
                    os.killpg(proc.pid, 2)
            for proc in reversed(procs):
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, 9)
        raw = json.loads(result_file.read_text()) if result_file.exists() else {}
        return summary(raw.get('latencies_ms', []), self.args.images, raw.get('seconds', 0.0))

    def cluster(self) -> dict:
        name = f'sl{os.getpid() % 1000}'
        state = self.tmp / 'cluster_state'
        base = [sys.executable, '-m', 'dff_lifecycle.cli.cluster', '--name', name,
                '--state-dir', str(state)]
        subprocess.run([*base, 'up', '--devices', '2', '--cpus', str(self.args.cpus),
                        '--rate', self.args.link, '--data-dir', str(self.tmp / name)],
                       check=True, env=self.env, capture_output=True, text=True)
        try:
            return self.served('pipeline', servers=2,
                               prefix_of=lambda member: [*base, 'exec', member, '--'])
        finally:
            subprocess.run([*base, 'down'], env=self.env, capture_output=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--config', default=str(REPO / 'params' / 'models' / 'mnist_classes.yaml'))
    parser.add_argument('--images', type=int, default=300)
    parser.add_argument('--rate', type=float, default=30.0)
    parser.add_argument('--cases', nargs='+', choices=CASES, default=list(CASES))
    parser.add_argument('--cpus', type=float, default=1.0, help='cluster: cores per device')
    parser.add_argument('--link', default='1gbit', help='cluster: link rate per device')
    parser.add_argument('--listen', type=int, help=argparse.SUPPRESS)
    parser.add_argument('--out', type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.listen:
        return listen(args.listen, args.out, args.listen / 5 + 120)
    if 'cluster' in args.cases and os.geteuid() != 0:
        print('serving_latency: the cluster case needs root (dff_cluster); leaving it out',
              file=sys.stderr)
        args.cases.remove('cluster')
    results = {}
    with tempfile.TemporaryDirectory(prefix='serving_latency_') as folder:
        bench = Bench(args, Path(folder))
        for case in args.cases:
            print(f'{case} ...', flush=True)
            results[case] = (bench.one_process() if case == 'one_process'
                             else bench.cluster() if case == 'cluster'
                             else bench.served(case, servers=2 if case == 'pipeline' else 0))
            print(f'  {results[case]}', flush=True)
    print(f'\n{"case":<12} {"answered":>9} {"p50 ms":>8} {"p99 ms":>8} {"answers/s":>10}')
    for case, r in results.items():
        print(f'{case:<12} {r["answered"]:>5}/{r["images"]:<3} {r["p50_ms"]!s:>8} '
              f'{r["p99_ms"]!s:>8} {r["answers_per_s"]!s:>10}')
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime('%Y%m%d_%H%M%S')
    path = RESULTS / f'serving_latency_{stamp}.json'
    path.write_text(json.dumps({
        'command': 'python benchmarks/serving_latency.py ' + ' '.join(sys.argv[1:]),
        'config': scrub(args.config), 'images': args.images, 'rate_hz': args.rate,
        'cpus_per_device': args.cpus, 'link': args.link, 'torch_threads': torch.get_num_threads(),
        'cases': results}, indent=1))
    print(f'wrote {scrub(str(path))}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
