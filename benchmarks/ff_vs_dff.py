"""FF (one process) vs DFF (server containers + master) on the same model config.

Runs both in one invocation, side by side, and prints and saves a table row:

    .venv/bin/python benchmarks/ff_vs_dff.py params/models/mnist_ff.yaml --servers 2
    .venv/bin/python benchmarks/ff_vs_dff.py params/models/cifar10_ff.yaml --servers 2 --skip-ff

Both use the same seeds, batches and layer code, so their accuracies should agree; the times
show what distribution costs or gains on this machine. Results go to benchmarks/results/.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import re
import subprocess
import sys
import tempfile
import time

from portable import scrub

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ACCURACY = re.compile(r'^test accuracy: (\d\.\d+)', re.M)


def run_ff(config: Path, out: Path, env: dict, epochs: int) -> dict:
    started = time.perf_counter()
    extra = ['--epochs', str(epochs)] if epochs else []
    proc = subprocess.run([str(BIN / 'dff_train'), '--config', str(config), '--out', str(out),
                           '--layers', str(REPO / 'params' / 'layers.yaml'), '--no-progress',
                           *extra], env=env, text=True, capture_output=True)
    wall = time.perf_counter() - started
    if proc.returncode:
        raise SystemExit(f'dff_train failed:\n{proc.stdout}\n{proc.stderr}')
    metrics = json.loads((out / 'metrics.json').read_text())
    return {'system': 'FF (1 process)', 'test_accuracy': metrics['test_accuracy'],
            'train_seconds': metrics['train_seconds'], 'wall_seconds': wall}


def run_dff(config: Path, servers: int, out: Path, env: dict, window: int, epochs: int,
            threads: int = 0) -> dict:
    env = {**env, 'ROS_DOMAIN_ID': env.get('ROS_DOMAIN_ID', str(60 + os.getpid() % 40)),
           'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST', 'PYTHONUNBUFFERED': '1'}
    threads = threads or max(1, (os.cpu_count() or 2) // servers)
    procs = [subprocess.Popen([str(BIN / 'server_container'), '--ros-args',
                               '-p', f'weight_dir:={out / f"weights_{i}"}',
                               '-p', f'torch_threads:={threads}'],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True) for i in range(servers)]
    try:
        started = time.perf_counter()
        master = subprocess.run(
            [str(BIN / 'master'), '--ros-args', '-p', f'model_config:={config}',
             '-p', f'layer_config:={REPO / "params" / "layers.yaml"}', '-p', f'servers:={servers}',
             '-p', 'progress:=false', '-p', f'out_dir:={out / "dff"}', '-p', f'window:={window}',
             '-p', f'epochs:={epochs}'],
            env=env, text=True, capture_output=True)
        wall = time.perf_counter() - started
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)
    if master.returncode:
        raise SystemExit(f'master failed:\n{master.stdout}\n{master.stderr}')
    metrics = json.loads((out / 'dff' / 'metrics.json').read_text())
    return {'system': f'DFF ({servers} containers)', 'test_accuracy': metrics['test_accuracy'],
            'train_seconds': metrics['train_seconds'], 'wall_seconds': wall}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', type=Path)
    parser.add_argument('--servers', type=int, default=2)
    parser.add_argument('--window', type=int, default=16)
    parser.add_argument('--epochs', type=int, default=0, help='override training.epochs')
    parser.add_argument('--threads', type=int, default=0,
                        help='torch threads per container (default: cores // servers)')
    parser.add_argument('--skip-ff', action='store_true')
    parser.add_argument('--skip-dff', action='store_true')
    args = parser.parse_args()
    env = dict(os.environ)
    env.setdefault('DFF_DATA_ROOT', str(REPO.parent / 'shared' / 'data'))
    rows = []
    with tempfile.TemporaryDirectory(prefix='dff_bench_') as tmp:
        if not args.skip_ff:
            rows.append(run_ff(args.config.resolve(), Path(tmp) / 'ff', env, args.epochs))
            print(rows[-1], flush=True)
        if not args.skip_dff:
            rows.append(run_dff(args.config.resolve(), args.servers, Path(tmp), env, args.window,
                                args.epochs, args.threads))
            print(rows[-1], flush=True)
    print(f'\n{args.config.name} on {os.cpu_count()} cores')
    print('| system | test accuracy | train s | wall s |\n|---|---|---|---|')
    for r in rows:
        print(f'| {r["system"]} | {r["test_accuracy"]:.4f} | {r["train_seconds"]:.1f} | '
              f'{r["wall_seconds"]:.1f} |')
    results = REPO / 'benchmarks' / 'results'
    results.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime('%Y%m%d_%H%M%S')
    path = results / f'ff_vs_dff_{args.config.stem}_{stamp}.json'
    path.write_text(json.dumps({'config': scrub(str(args.config.resolve())),
                                'epochs': args.epochs or 'config',
                                'cores': os.cpu_count(),
                                'threads_per_container': args.threads or 'cores // servers',
                                'rows': rows}, indent=2) + '\n')
    print(f'saved {path.relative_to(REPO)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
