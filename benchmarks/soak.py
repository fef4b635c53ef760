"""
Soak: measure whether a server container's memory grows with use.

    python benchmarks/soak.py [--cycles 1000] [--models 100]

One server container on an isolated ROS domain, driven through its services by a
helper node, its resident memory (VmRSS) read from /proc before and after:

lifecycle  --cycles configure / activate / deactivate / cleanup cycles of one layer
models     --models create / bring-up / delete cycles of a two-layer model
two        two models trained on the same two containers at once (two masters)

Memory is read after a warm-up (the first cycles pay for torch's one-time
allocations), so growth means a leak. JSON goes to benchmarks/results/.
"""
from __future__ import annotations

import argparse
from dataclasses import replace
import json
import os
from pathlib import Path
import re
import subprocess
import sys
import tempfile
import time
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'test'))

from dff_lifecycle.core.config import load_layer_config, load_model_config  # noqa: E402
from dff_lifecycle.master.plan import build_plan  # noqa: E402
from dff_lifecycle.ros.domain_lease import allocate_domain_id  # noqa: E402
from dff_lifecycle.ros.lifecycle_client import LifecycleClient  # noqa: E402
from dff_lifecycle.ros.process import ros_process  # noqa: E402
from dff_lifecycle.ros.service_calls import call, ClientCache  # noqa: E402
from dff_msgs.msg import LayerSpec  # noqa: E402
from dff_msgs.srv import CreateLayers, DeleteModel  # noqa: E402
from portable import scrub  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

BIN = Path(sys.executable).parent
LAYERS = REPO / 'params' / 'layers.yaml'
TINY = REPO / 'test' / 'fixtures' / 'mnist_tiny.yaml'
SMALL = REPO / 'test' / 'fixtures' / 'mnist_small.yaml'
RESULTS = REPO / 'benchmarks' / 'results'


def rss_mib(pid: int) -> float:
    text = Path(f'/proc/{pid}/status').read_text()
    return int(re.search(r'VmRSS:\s+(\d+) kB', text).group(1)) / 1024


def server(env: dict, weights: Path, name: str) -> subprocess.Popen:
    log = weights.parent / f'{name}.log'  # a file: an unread pipe would block its logging
    with open(log, 'w') as out:
        proc = subprocess.Popen([str(BIN / 'server_container'), '--ros-args', '-p',
                                 f'server_name:={name}', '-p', f'weight_dir:={weights}', '-p',
                                 'torch_threads:=1'], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while 'up (pid' not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f'{name} did not come up:\n{log.read_text()[-2000:]}')
        time.sleep(0.1)
    return proc


def specs(model_name: str) -> list[LayerSpec]:
    model = load_model_config(TINY, load_layer_config(LAYERS))
    model = replace(model, name=model_name)
    return [LayerSpec(model=model_name, layer_index=p.layer.index, layer_type=p.layer.module,
                      node_name=p.node_name,
                      parameters=[Parameter(k, value=v).to_parameter_msg()
                                  for k, v in p.parameters.items()])
            for p in build_plan(model, ['server_1']).placements]


def measure(cycle: Callable[[], None], pid: int, warmup: int, count: int) -> dict:
    """Run `cycle` warmup times, then count times; the server's RSS around the second run."""
    for _ in range(warmup):
        cycle()
    before, started = rss_mib(pid), time.perf_counter()
    for _ in range(count):
        cycle()
    seconds = time.perf_counter() - started
    after = rss_mib(pid)
    return {'cycles': count, 'rss_before_mib': round(before, 1), 'rss_after_mib': round(after, 1),
            'growth_mib': round(after - before, 1), 'seconds': round(seconds, 1)}


def lifecycle(node: Node, pid: int, cycles: int) -> dict:
    clients = ClientCache(node)
    create = clients.get(CreateLayers, '/dff/server_1/create_layers')
    response = call(create, CreateLayers.Request(layers=specs('soak_a')[:1]), 30)
    assert response.success, response.message
    layer = response.node_names[0]
    lc = LifecycleClient(clients, 15.0)

    def cycle() -> None:
        for label in ('configure', 'activate', 'deactivate', 'cleanup'):
            lc.transition(layer, label)
    result = measure(cycle, pid, warmup=20, count=cycles)
    call(clients.get(DeleteModel, '/dff/server_1/delete_model'),
         DeleteModel.Request(model='soak_a', save_weights=False), 30)
    return result


def models(node: Node, pid: int, count: int) -> dict:
    clients = ClientCache(node)
    create = clients.get(CreateLayers, '/dff/server_1/create_layers')
    delete = clients.get(DeleteModel, '/dff/server_1/delete_model')
    lc = LifecycleClient(clients, 15.0)

    def cycle() -> None:
        response = call(create, CreateLayers.Request(layers=specs('soak_b')), 30)
        assert response.success, response.message
        for label in ('configure', 'activate'):
            for layer in response.node_names:
                lc.transition(layer, label)
        call(delete, DeleteModel.Request(model='soak_b', save_weights=False), 30)
    return {**measure(cycle, pid, warmup=5, count=count),
            'graph_nodes_left': sorted(n for n, ns in node.get_node_names_and_namespaces()
                                       if ns.startswith('/soak_b'))}


def two_models(env: dict, tmp: Path, pids: list[int]) -> dict:
    before = [rss_mib(p) for p in pids]
    masters = []
    for name in ('soak_x', 'soak_y'):
        config = tmp / f'{name}.yaml'
        config.write_text(SMALL.read_text().replace('name: mnist_small', f'name: {name}'))
        masters.append(subprocess.Popen(
            [str(BIN / 'master'), '--ros-args', '-p', f'model_config:={config}', '-p',
             f'layer_config:={LAYERS}', '-p', 'servers:=2', '-p', 'progress:=false',
             '-p', 'epochs:=2'], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True))
    outputs = [m.communicate(timeout=900)[0] for m in masters]
    accuracy = [float(m.group(1)) if (m := re.search(r'test accuracy: (\d\.\d+)', o)) else None
                for o in outputs]
    after = [rss_mib(p) for p in pids]
    return {'exit_codes': [m.returncode for m in masters], 'accuracy': accuracy,
            'rss_before_mib': [round(b, 1) for b in before],
            'rss_after_mib': [round(a, 1) for a in after],
            'output_tail': [o[-1500:] for o in outputs if 'test accuracy' not in o]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1].strip())
    parser.add_argument('--cycles', type=int, default=1000)
    parser.add_argument('--models', type=int, default=100)
    args = parser.parse_args()
    env = {**os.environ, 'ROS_DOMAIN_ID': str(allocate_domain_id()),
           'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST',
           'DFF_DATA_ROOT': os.environ.get('DFF_DATA_ROOT', str(REPO.parent / 'shared' / 'data'))}
    os.environ.update(env)
    with tempfile.TemporaryDirectory(prefix='dff_soak_') as tmp_name:
        tmp = Path(tmp_name)
        procs = [server(env, tmp / 'w1', 'server_1'), server(env, tmp / 'w2', 'server_2')]
        try:
            with ros_process([], own_context=True) as ros:
                node = Node('dff_soak', context=ros.context)
                ros.start(node, threads=2)
                time.sleep(1.0)
                result = {'lifecycle': lifecycle(node, procs[0].pid, args.cycles)}
                print('lifecycle', result['lifecycle'], flush=True)
                result['models'] = models(node, procs[0].pid, args.models)
                print('models', result['models'], flush=True)
            result['two_models'] = two_models(env, tmp, [p.pid for p in procs])
            print('two models', result['two_models'], flush=True)
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(60)
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f'soak_{time.strftime("%Y%m%d_%H%M%S")}.json'
        path.write_text(scrub(json.dumps(result, indent=2), [tmp]) + '\n')
        print(f'saved {path.relative_to(REPO)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
