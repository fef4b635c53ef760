"""FF (one process) vs DFF (server containers + master) on the same model config.

Runs both in one invocation, side by side, and prints and saves a table row:

    .venv/bin/python benchmarks/ff_vs_dff.py params/models/mnist_ff.yaml --servers 2
    .venv/bin/python benchmarks/ff_vs_dff.py params/models/cifar10_ff.yaml --servers 2 --skip-ff
    .venv/bin/python benchmarks/ff_vs_dff.py params/models/mnist_ff.yaml --bundle 1 0 --runs 3

`--bundle` runs DFF once per value of the master's `bundle` parameter (1: a message per batch,
0: bundles sized from the measured pace); `--runs` repeats everything, alternating, and the
table gives medians and each DFF's ratio to FF.

Both use the same seeds, batches and layer code, so their accuracies should agree; the times
show what distribution costs or gains on this machine. Results go to benchmarks/results/.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from portable import scrub

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ACCURACY = re.compile(r'^test accuracy: (\d\.\d+)', re.M)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process so far."""
    fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def run_ff(config: Path, out: Path, env: dict, epochs: int) -> dict:
    started = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    extra = ['--epochs', str(epochs)] if epochs else []
    proc = subprocess.run([str(BIN / 'dff_train'), '--config', str(config), '--out', str(out),
                           '--layers', str(REPO / 'params' / 'layers.yaml'), '--no-progress',
                           *extra], env=env, text=True, capture_output=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise SystemExit(f'dff_train failed:\n{proc.stdout}\n{proc.stderr}')
    metrics = json.loads((out / 'metrics.json').read_text())
    batches = metrics.get('batches_done') or metrics.get('train_batches')
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return {'system': 'FF (1 process)', 'test_accuracy': metrics['test_accuracy'],
            'train_seconds': metrics['train_seconds'], 'wall_seconds': wall,
            **({'cpu_ms_per_batch': {'process': 1e3 * cpu / batches}} if batches else {})}


def run_dff(config: Path, servers: int, out: Path, env: dict, window: int, epochs: int,
            threads: int = 0, bundle: int | None = None) -> dict:
    from dff_lifecycle.ros.domain_lease import allocate_domain_id
    env = {**env, 'ROS_DOMAIN_ID': env.get('ROS_DOMAIN_ID') or str(allocate_domain_id()),
           'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST', 'PYTHONUNBUFFERED': '1'}
    threads = threads or max(1, (os.cpu_count() or 2) // servers)
    procs = [subprocess.Popen([str(BIN / 'server_container'), '--ros-args',
                               '-p', f'weight_dir:={out / f"weights_{i}"}',
                               '-p', f'torch_threads:={threads}'],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True) for i in range(servers)]
    try:
        started = time.perf_counter()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        master = subprocess.run(
            [str(BIN / 'master'), '--ros-args', '-p', f'model_config:={config}',
             '-p', f'layer_config:={REPO / "params" / "layers.yaml"}', '-p', f'servers:={servers}',
             '-p', 'progress:=false', '-p', f'out_dir:={out / "dff"}', '-p', f'window:={window}',
             '-p', f'epochs:={epochs}',
             *(['-p', f'bundle:={bundle}'] if bundle is not None else [])],
            env=env, text=True, capture_output=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        master_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        wall = time.perf_counter() - started
        container_cpu = sum(cpu_seconds(p.pid) for p in procs)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)
    if master.returncode:
        raise SystemExit(f'master failed:\n{master.stdout}\n{master.stderr}')
    metrics = json.loads((out / 'dff' / 'metrics.json').read_text())
    label = f'DFF ({servers} containers' + (f', bundle {bundle})' if bundle is not None else ')')
    return {'system': label, 'test_accuracy': metrics['test_accuracy'],
            'train_seconds': metrics['train_seconds'], 'wall_seconds': wall,
            'bundles': metrics.get('bundles'),
            # CPU of every DFF process per training batch (master: bring-up and evaluation too).
            'cpu_ms_per_batch': {
                'master': 1e3 * master_cpu / metrics['batches_done'],
                'containers': 1e3 * container_cpu / metrics['batches_done']}}


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
    parser.add_argument('--bundle', type=int, nargs='+', default=None,
                        help="DFF runs with these values of the master's bundle parameter")
    parser.add_argument('--runs', type=int, default=1, help='repeat everything, alternating')
    args = parser.parse_args()
    if args.runs < 1 or any(b < 0 for b in args.bundle or []):
        parser.error('--runs must be >= 1 and --bundle values >= 0')
    if args.servers < 1 or args.window < 1 or args.epochs < 0 or args.threads < 0:
        parser.error('--servers and --window must be >= 1, --epochs and --threads >= 0')
    if not args.config.is_file():
        parser.error(f'no model config at {args.config}')
    env = dict(os.environ)
    env.setdefault('DFF_DATA_ROOT', str(REPO.parent / 'shared' / 'data'))
    rows = []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix='dff_bench_') as tmp:
            if not args.skip_ff:
                rows.append({**run_ff(args.config.resolve(), Path(tmp) / 'ff', env, args.epochs),
                             'run': run})
                print(rows[-1], flush=True)
            bundles = [] if args.skip_dff else (args.bundle or [None])
            for i, bundle in enumerate(bundles):
                rows.append({**run_dff(args.config.resolve(), args.servers, Path(tmp) / f'd{i}',
                                       env, args.window, args.epochs, args.threads, bundle),
                             'run': run})
                print(rows[-1], flush=True)
    print(f'\n{args.config.name} on {os.cpu_count()} cores, {args.runs} run(s), medians')
    systems = list(dict.fromkeys(r['system'] for r in rows))
    ff = [r['train_seconds'] for r in rows if r['system'].startswith('FF')]
    print('| system | test accuracy | train s | wall s | train / FF | CPU ms per batch (training '
          'and evaluation) |\n|---|---|---|---|---|---|')
    summary = []
    for name in systems:
        mine = [r for r in rows if r['system'] == name]
        train = statistics.median(r['train_seconds'] for r in mine)
        ratio = train / statistics.median(ff) if ff else None
        summary.append({'system': name, 'median_train_seconds': train,
                        'median_wall_seconds': statistics.median(r['wall_seconds'] for r in mine),
                        'accuracies': sorted({r['test_accuracy'] for r in mine}),
                        'train_over_ff': ratio})
        cpu = ''
        if 'cpu_ms_per_batch' in mine[0]:
            summary[-1]['median_cpu_ms_per_batch'] = {
                part: statistics.median(r['cpu_ms_per_batch'][part] for r in mine)
                for part in mine[0]['cpu_ms_per_batch']}
            cpu = ', '.join(f'{part} {value:.2f}' for part, value
                            in summary[-1]['median_cpu_ms_per_batch'].items())
        print(f'| {name} | {", ".join(f"{a:.4f}" for a in summary[-1]["accuracies"])} | '
              f'{train:.1f} | {summary[-1]["median_wall_seconds"]:.1f} | '
              f'{"" if ratio is None else f"{ratio:.2f}"} | {cpu} |')
    results = REPO / 'benchmarks' / 'results'
    results.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime('%Y%m%d_%H%M%S')
    path = results / f'ff_vs_dff_{args.config.stem}_{stamp}.json'
    path.write_text(json.dumps({'config': scrub(str(args.config.resolve())),
                                'epochs': args.epochs or 'config',
                                'cores': os.cpu_count(),
                                'threads_per_container': args.threads or 'cores // servers',
                                'runs': args.runs, 'summary': summary,
                                'rows': rows}, indent=2) + '\n')
    print(f'saved {path.relative_to(REPO)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
