"""Benchmarks on the emulated cluster (needs root): scaling, the paper's thesis, links.

    sudo .venv/bin/python benchmarks/cluster_bench.py scaling [--cpus 0.5]
    sudo .venv/bin/python benchmarks/cluster_bench.py thesis [--memory 2560]
    sudo .venv/bin/python benchmarks/cluster_bench.py split [--memory 5120 --shards 4]
    sudo .venv/bin/python benchmarks/cluster_bench.py links [--rates 1gbit 100mbit 20mbit]
    sudo .venv/bin/python benchmarks/cluster_bench.py placement [--devices 3 --cpus 0.4]
    sudo .venv/bin/python benchmarks/cluster_bench.py replicas [--cpus 0.4 --runs 2]

Each makes its clusters with dff_cluster, runs FF (dff_train on one device) and DFF
(dff_launch --cluster) side by side in the same invocation, prints a table, and writes
JSON and a PNG to benchmarks/results/. Clusters are removed afterwards, also on errors.
"""
from __future__ import annotations

import argparse
from contextlib import contextmanager
import json
import math
import os
from pathlib import Path
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Iterator, Optional

from dff_lifecycle.ros.domain_lease import allocate_domain_id
from portable import scrub

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
RESULTS = REPO / 'benchmarks' / 'results'
CONFIGS = REPO / 'benchmarks' / 'configs'
LAYERS = REPO / 'params' / 'layers.yaml'


class Bench:
    """One benchmark invocation: its temp folder, ROS domain and cluster names."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.state = tmp / 'state'
        # A leased domain, as the tests lease theirs: never one a test or run is using.
        self.env = {**os.environ, 'ROS_DOMAIN_ID': str(allocate_domain_id()),
                    'DFF_DATA_ROOT': os.environ.get('DFF_DATA_ROOT',
                                                    str(REPO.parent / 'shared' / 'data')),
                    'PYTHONUNBUFFERED': '1'}
        self.runs = 0

    def cluster_cmd(self, name: str, *args: str) -> list[str]:
        return [PY, '-m', 'dff_lifecycle.cli.cluster', '--name', name, '--state-dir',
                str(self.state), *args]

    @contextmanager
    def cluster(self, devices: int, **options: object) -> Iterator[str]:
        self.runs += 1
        name = f'cb{self.runs}'
        flags = [f'--{k.replace("_", "-")}' if v is True else f'--{k.replace("_", "-")}={v}'
                 for k, v in options.items() if v not in (None, 0, '', False)]
        subprocess.run(self.cluster_cmd(name, 'up', '--devices', str(devices), '--data-dir',
                                        str(self.tmp / name), *flags),
                       check=True, env=self.env, capture_output=True, text=True)
        try:
            yield name
        finally:
            subprocess.run(self.cluster_cmd(name, 'down'), env=self.env, capture_output=True)

    @contextmanager
    def rss_sampler(self, name: str, period_s: float = 0.25) -> Iterator[dict[str, int]]:
        """Peak resident memory (MiB) per device, sampled from each memory cgroup.

        The cgroup's own peak counts page cache too (weight files being written), which
        the kernel gives back under pressure; resident memory is what must fit the cap.
        """
        peaks: dict[str, int] = {}
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(period_s):
                for stat in Path('/sys/fs/cgroup/memory/dff', name).glob('d*/memory.stat'):
                    try:
                        rss = next(int(line.split()[1]) for line in stat.read_text().splitlines()
                                   if line.startswith('rss '))
                    except (OSError, StopIteration):
                        continue
                    device = stat.parent.name
                    peaks[device] = max(peaks.get(device, 0), rss >> 20)
        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        try:
            yield peaks
        finally:
            stop.set()
            thread.join()

    def oom_kills(self, name: str) -> dict[str, int]:
        kills = {}
        for control in Path('/sys/fs/cgroup/memory/dff', name).glob('d*/memory.oom_control'):
            text = control.read_text()
            kills[control.parent.name] = int(re.search(r'oom_kill (\d+)', text).group(1)) \
                if 'oom_kill ' in text else 0
        return kills

    def peaks(self, name: str) -> dict[str, int]:
        out = subprocess.run(self.cluster_cmd(name, 'status'), env=self.env,
                             capture_output=True, text=True).stdout
        return {m: int(p) for m, p in re.findall(r'^\s+(d\d+)\s.*peak memory (\d+) MiB', out,
                                                 re.M)}

    def ff(self, name: str, config: Path, out: Path, timeout: float = 3600) -> dict:
        """dff_train of `config` on device d1 of cluster `name`."""
        done = subprocess.run(self.cluster_cmd(name, 'exec', 'd1', '--', PY, '-m',
                                               'dff_lifecycle.cli.train', '--config',
                                               str(config), '--layers', str(LAYERS), '--out',
                                               str(out), '--no-progress'),
                              env=self.env, capture_output=True, text=True, timeout=timeout)
        result = {'returncode': done.returncode, 'output': (done.stdout + done.stderr)[-2000:]}
        if done.returncode == 0:
            result.update(json.loads((out / 'metrics.json').read_text()))
        return result

    def dff(self, name: str, config: Path, servers: int, out: Path,
            master: Optional[dict] = None, timeout: float = 3600) -> dict:
        """dff_launch of `config` over `servers` containers on cluster `name`."""
        deployment = self.tmp / f'{name}_deploy.yaml'
        params = {'model_config': str(config), 'layer_config': str(LAYERS), 'servers': servers,
                  'out_dir': str(out), 'progress': False, 'load_weights': False,
                  **(master or {})}
        lines = ['/dff/master:', '  ros__parameters:']
        lines += [f'    {k}: {json.dumps(v)}' for k, v in params.items()]
        deployment.write_text('\n'.join(lines) + '\n')
        started = time.perf_counter()
        done = subprocess.run([PY, '-m', 'dff_lifecycle.cli.launcher', str(deployment),
                               '--cluster', name, '--cluster-state-dir', str(self.state)],
                              env=self.env, capture_output=True, text=True, timeout=timeout)
        result = {'returncode': done.returncode, 'wall_seconds': time.perf_counter() - started,
                  'output': done.stdout[-3000:] + done.stderr[-1000:],
                  'peak_mib': self.peaks(name)}
        if done.returncode == 0:
            result.update(json.loads((out / 'metrics.json').read_text()))
        return result


def ready_for_clusters(prog: str) -> bool:
    """Check for root, and make SIGTERM unwind like Ctrl-C so every cluster is removed."""
    if os.geteuid() != 0:
        print(f'{prog}: error: needs root (dff_cluster)', file=sys.stderr)
        return False

    def interrupt(_signum, _frame) -> None:
        raise KeyboardInterrupt  # the clusters' `finally` removes them
    signal.signal(signal.SIGTERM, interrupt)
    return True


def save(kind: str, payload: dict, figure, tmp: Path) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime('%Y%m%d_%H%M%S')
    path = RESULTS / f'cluster_{kind}_{stamp}.json'
    path.write_text(scrub(json.dumps(payload, indent=2, default=str), [tmp]) + '\n')
    figure.savefig(path.with_suffix('.png'), dpi=110, bbox_inches='tight')
    print(f'saved {path.relative_to(REPO)} and .png')
    return path


def plt():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as pyplot
    return pyplot


def stage_costs(bench: Bench, name: str, config: Path) -> list[float]:
    """Seconds per training batch of each stage of `config`, measured on device d1."""
    script = str(REPO / 'benchmarks' / 'stage_costs.py')
    done = subprocess.run(bench.cluster_cmd(name, 'exec', 'd1', '--', PY, script, str(config)),
                          env=bench.env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)['seconds_per_batch']


def brief(run: dict) -> dict:
    """Return the fields a results table needs (the JSON keeps the whole run)."""
    return {k: run.get(k) for k in ('returncode', 'train_seconds', 'test_accuracy',
                                    'wall_seconds', 'peak_mib', 'bring_up_seconds')}


# ----------------------------------------------------------------------------- scaling

def scaling(bench: Bench, args: argparse.Namespace) -> int:
    config = CONFIGS / 'scaling_4x2000.yaml'
    with bench.cluster(1, cpus=args.cpus) as name:
        costs = stage_costs(bench, name, config)
        ff = bench.ff(name, config, bench.tmp / 'ff')
    if ff['returncode']:
        raise SystemExit(f'FF failed:\n{ff["output"]}')
    rows = [{'system': 'FF, 1 process on 1 device', 'devices': 1, **brief(ff), 'ideal': 1.0}]
    for k in args.devices:
        with bench.cluster(k, cpus=args.cpus) as name:
            run = bench.dff(name, config, k, bench.tmp / f'dff_{k}')
        if run['returncode']:
            raise SystemExit(f'DFF on {k} devices failed:\n{run["output"]}')
        block = math.ceil(len(costs) / k)  # contiguous placement
        stages = [sum(costs[i:i + block]) for i in range(0, len(costs), block)]
        rows.append({'system': f'DFF, {k} device(s)', 'devices': k, **brief(run),
                     'stage_seconds_per_batch': stages, 'ideal': sum(costs) / max(stages)})
    base = rows[0]['train_seconds']
    for row in rows:
        row['speedup'] = base / row['train_seconds']
        row['efficiency'] = row['speedup'] / row['ideal']
    print(f'\nscaling: {config.name}, 1 epoch of 6000 images, devices of {args.cpus:g} core')
    print(f'layer step costs on one device (s/batch): {[round(c, 4) for c in costs]}')
    print('| system | s / epoch | accuracy | speed-up | ideal | efficiency |')
    print('|---|---|---|---|---|---|')
    for r in rows:
        print(f'| {r["system"]} | {r["train_seconds"]:.1f} | {r["test_accuracy"]:.4f} | '
              f'{r["speedup"]:.2f}x | {r["ideal"]:.2f} | {r["efficiency"]:.2f} |')
    pyplot = plt()
    fig, (left, right) = pyplot.subplots(1, 2, figsize=(10, 4))
    left.bar([r['system'].replace(', ', '\n') for r in rows], [r['train_seconds'] for r in rows])
    left.set_ylabel('seconds per epoch')
    right.plot([r['devices'] for r in rows[1:]], [r['speedup'] for r in rows[1:]], 'o-',
               label='speed-up')
    right.plot([r['devices'] for r in rows[1:]], [r['ideal'] for r in rows[1:]], 's--',
               label='ideal (balance)')
    right.set_xlabel('devices')
    right.legend()
    save('scaling', {'config': str(config), 'cpus': args.cpus, 'stage_costs': costs,
                     'rows': rows}, fig, bench.tmp)
    return 0


# --------------------------------------------------------------------------- placement

def placement(bench: Bench, args: argparse.Namespace) -> int:
    """Contiguous against balanced placement on the same devices, alternating, --runs each."""
    config = CONFIGS / 'scaling_4x2000.yaml'
    k = args.devices
    with bench.cluster(1, cpus=args.cpus) as name:
        costs = stage_costs(bench, name, config)
    runs: dict[str, list[dict]] = {'contiguous': [], 'balanced': []}
    with bench.cluster(k, cpus=args.cpus) as name:
        for attempt in range(args.runs):
            for policy in runs:
                master = {'placement': policy}
                if policy == 'balanced':  # the costs measured on a device, as a user would
                    master['stage_costs'] = [f'{c:.6f}' for c in costs]
                run = bench.dff(name, config, k, bench.tmp / f'{policy}_{attempt}', master)
                if run['returncode']:
                    raise SystemExit(f'{policy} failed:\n{run["output"]}')
                runs[policy].append(run)
    rows = []
    for policy, done in runs.items():
        seconds = sorted(r['train_seconds'] for r in done)
        plan = [entry['server'] for entry in done[0]['plan']]
        servers = sorted(set(plan))
        blocks = [sum(c for c, s in zip(costs, plan) if s == server) for server in servers]
        rows.append({'placement': policy, 'plan': plan, 'train_seconds': seconds,
                     'median_seconds': statistics.median(seconds),
                     'accuracy': [r['test_accuracy'] for r in done],
                     'slowest_stage_s_per_batch': max(blocks),
                     'ideal_speedup': sum(costs) / max(blocks)})
    ratio = rows[0]['median_seconds'] / rows[1]['median_seconds']
    print(f'\nplacement: {config.name} on {k} devices of {args.cpus:g} core, '
          f'{args.runs} runs each')
    print(f'layer step costs on one device (s/batch): {[round(c, 4) for c in costs]}')
    print('| placement | plan | median s / epoch | accuracy | slowest stage s/batch |')
    print('|---|---|---|---|---|')
    for r in rows:
        print(f'| {r["placement"]} | {" ".join(r["plan"])} | {r["median_seconds"]:.1f} | '
              f'{r["accuracy"][0]:.4f} | {r["slowest_stage_s_per_batch"]:.4f} |')
    print(f'contiguous / balanced: {ratio:.2f}x')
    pyplot = plt()
    fig, axis = pyplot.subplots(figsize=(5, 4))
    axis.bar([r['placement'] for r in rows], [r['median_seconds'] for r in rows])
    axis.set_ylabel(f'seconds per epoch ({k} devices of {args.cpus:g} core)')
    save('placement', {'config': str(config), 'cpus': args.cpus, 'devices': k,
                       'stage_costs': costs, 'rows': rows, 'contiguous_over_balanced': ratio},
         fig, bench.tmp)
    return 0


# ---------------------------------------------------------------------------- replicas

def replicas(bench: Bench, args: argparse.Namespace) -> int:
    """
    One layer per device against the heavy layer copied on two, alternating, --runs each.

    Three devices either way: layers 0, 1, 2 on one each (the heavy layer 1 sets the pace),
    or layers 0 and 2 together on the first and layer 1 copied on the other two.
    """
    config = CONFIGS / 'replicas_bottleneck.yaml'
    with bench.cluster(1, cpus=args.cpus) as name:
        costs = stage_costs(bench, name, config)
    setups = {
        'one layer per device': ({'placement': 'contiguous'}, [costs[0], costs[1], costs[2]]),
        'layer 1 copied on 2 devices': (
            {'placement': 'pinned', 'pins': ['0:server_1', '2:server_1'],
             'replicas': ['1:2'], 'sync_every': args.sync_every},
            [costs[0] + costs[2], costs[1] / 2, costs[1] / 2]),
    }
    runs: dict[str, list[dict]] = {label: [] for label in setups}
    with bench.cluster(3, cpus=args.cpus) as name:
        for attempt in range(args.runs):
            for label, (master, _) in setups.items():
                run = bench.dff(name, config, 3, bench.tmp / f'{len(runs[label])}_{attempt}',
                                master)
                if run['returncode']:
                    raise SystemExit(f'{label} failed:\n{run["output"]}')
                runs[label].append(run)
    rows = []
    for label, done in runs.items():
        seconds = sorted(r['train_seconds'] for r in done)
        stages = setups[label][1]
        rows.append({'setup': label, 'master': setups[label][0], 'train_seconds': seconds,
                     'median_seconds': statistics.median(seconds),
                     'accuracy': [r['test_accuracy'] for r in done],
                     'plan': done[0]['plan'], 'slowest_stage_s_per_batch': max(stages),
                     'ideal_speedup': sum(costs) / max(stages)})
    ratio = rows[0]['median_seconds'] / rows[1]['median_seconds']
    print(f'\nreplicas: {config.name} on 3 devices of {args.cpus:g} core, {args.runs} runs '
          f'each, copies averaged every {args.sync_every} batches')
    print(f'layer step costs on one device (s/batch): {[round(c, 4) for c in costs]}')
    print('| setup | median s / epoch | accuracy | slowest stage s/batch (ideal speed-up) |')
    print('|---|---|---|---|')
    for r in rows:
        print(f'| {r["setup"]} | {r["median_seconds"]:.1f} | '
              f'{", ".join(f"{a:.4f}" for a in r["accuracy"])} | '
              f'{r["slowest_stage_s_per_batch"]:.4f} ({r["ideal_speedup"]:.2f}x) |')
    print(f'one layer per device / copied: {ratio:.2f}x (ideal '
          f'{rows[1]["ideal_speedup"] / rows[0]["ideal_speedup"]:.2f}x)')
    pyplot = plt()
    fig, axis = pyplot.subplots(figsize=(5, 4))
    axis.bar([r['setup'].replace(' on ', '\non ') for r in rows],
             [r['median_seconds'] for r in rows])
    axis.set_ylabel(f'seconds per epoch (3 devices of {args.cpus:g} core)')
    save('replicas', {'config': str(config), 'cpus': args.cpus, 'stage_costs': costs,
                      'rows': rows, 'per_device_over_copied': ratio}, fig, bench.tmp)
    return 0


# ------------------------------------------------------------------------------ thesis

def memory_figure(peaks: dict[str, int], cap_mib: int, whole_bytes: int, whole_label: str):
    """Bars of each device's peak resident memory against its cap and the whole state."""
    pyplot = plt()
    fig, ax = pyplot.subplots(figsize=(6, 4))
    ax.bar(list(peaks), list(peaks.values()), label='DFF peak resident memory per device')
    ax.axhline(cap_mib, color='red', linestyle='--', label=f'cap {cap_mib} MiB')
    ax.axhline(whole_bytes >> 20, color='gray', linestyle=':', label=whole_label)
    ax.set_ylabel('MiB')
    ax.legend()
    return fig


def thesis_config(path: Path, width: int) -> Path:
    text = (CONFIGS / 'thesis_template.yaml').read_text().replace('WIDTH', str(width))
    path.write_text(text)
    return path


def thesis(bench: Bench, args: argparse.Namespace) -> int:
    from dff_lifecycle.common.memory_limit import mib
    from dff_lifecycle.core.ff.memory import state_bytes
    cap = args.memory << 20
    # Five layers, 784->w then four w->w, on four devices: each w->w layer's weights and
    # gradients (plain SGD: 8 bytes per weight) are a quarter of the model's; w is chosen
    # so that the model's total is at least 3 x the cap.
    width = math.ceil(math.sqrt(3 * cap / (4 * 8)))
    config = thesis_config(bench.tmp / 'thesis.yaml', width)
    total = state_bytes(784, width, 'sgd') + 4 * state_bytes(width, width, 'sgd')
    print(f'thesis: cap {args.memory} MiB per device; model 784->{width} + 4 x '
          f'{width}->{width}: {mib(total)} of weights and gradients (SGD) '
          f'({total / cap:.2f} x the cap)')
    # One layer per device: two of these layers on one device do not fit its cap once
    # both are trained (each layer claims its whole need at configure, so they are refused).
    with bench.cluster(5, memory=args.memory, cpus=args.cpus) as name:
        with bench.rss_sampler(name) as ff_rss:
            ff = bench.ff(name, config, bench.tmp / 'thesis_ff', timeout=600)
        ff_peak = ff_rss.get('d1')
        with bench.rss_sampler(name) as rss:
            run = bench.dff(name, config, 5, bench.tmp / 'thesis_dff', timeout=3600,
                            master={'placement': 'pinned',
                                    'pins': [f'{i}:server_{i + 1}' for i in range(5)]})
        run['peak_rss_mib'] = dict(sorted(rss.items()))
        run['oom_kills'] = bench.oom_kills(name)
    clean_refusal = ff['returncode'] == 2 and 'does not fit' in ff['output'] or \
        ff['returncode'] == 2 and 'needs about' in ff['output']
    print('| system | result | peak resident MiB per device |\n|---|---|---|')
    message = ff['output'].strip().splitlines()[-1] if ff['output'].strip() else ''
    print(f'| FF, 1 process on 1 device | exit {ff["returncode"]}: {message[:160]} | '
          f'{ff_peak} |')
    result = (f'test accuracy {run["test_accuracy"]:.4f}' if run['returncode'] == 0
              else f'exit {run["returncode"]}')
    print(f'| DFF, 5 devices | {result}, OOM kills {run["oom_kills"]} | {run["peak_rss_mib"]} |')
    fig = memory_figure(run['peak_rss_mib'], args.memory, total, 'model state (one process)')
    save('thesis', {'cap_mib': args.memory, 'width': width, 'model_state_bytes': total,
                    'ff': ff, 'ff_peak_rss_mib': ff_peak, 'ff_clean_refusal': clean_refusal,
                    'dff': {**brief(run), 'peak_rss_mib': run['peak_rss_mib'],
                            'oom_kills': run['oom_kills']},
                    'dff_output': run['output']}, fig, bench.tmp)
    return 0 if clean_refusal and run['returncode'] == 0 else 1


# ------------------------------------------------------------------------------- split

SPLIT_IN = 4000  # layer 1 reads 4000 units: its width sets its state


def split(bench: Bench, args: argparse.Namespace) -> int:
    """One layer whose state is `--ratio` x a device's cap, split over `--shards` devices."""
    from dff_lifecycle.common.memory_limit import mib
    from dff_lifecycle.core.ff.memory import persistent_state_bytes
    cap = args.memory << 20
    width = math.ceil(args.ratio * cap / persistent_state_bytes(SPLIT_IN + 1, 'sgd'))
    layer_state = persistent_state_bytes((SPLIT_IN + 1) * width, 'sgd')
    config = bench.tmp / 'split.yaml'
    config.write_text((CONFIGS / 'split_template.yaml').read_text()
                      .replace('WIDTH', str(width)).replace('IN', str(SPLIT_IN)))
    print(f'split: cap {args.memory} MiB per device; layer 1 {SPLIT_IN}->{width}: '
          f'{mib(layer_state)} of weights and gradients (plain SGD) '
          f'({layer_state / cap:.2f} x the cap), in {args.shards} shards of '
          f'{mib(layer_state // args.shards)}', flush=True)
    # Each shard has a device of its own; layers 0 and 2 share one more (by default), or go
    # beside the first and the last shard with --devices <shards>. Beside a shard they do
    # not fit at these sizes: layer 2 reads the whole split layer's activations (its claim
    # at a 4096 MiB cap: 1,354 MiB with its input batches), and each shard leaves the cap
    # less the container and the shard's own step.
    devices = args.devices or args.shards + 1
    servers = [f'server_{i + 1}' for i in range(devices)]
    pins = [f'0:{servers[0]}', f'2:{servers[0] if devices > args.shards else servers[-1]}']
    with bench.cluster(devices, memory=args.memory, cpus=args.cpus) as name:
        with bench.rss_sampler(name) as ff_rss:
            ff = bench.ff(name, config, bench.tmp / 'split_ff', timeout=900)
        ff_peak = ff_rss.get('d1')
        with bench.rss_sampler(name) as rss:
            run = bench.dff(name, config, devices, bench.tmp / 'split_dff', timeout=3600,
                            master={'placement': 'pinned', 'shards': [f'1:{args.shards}'],
                                    'pins': pins,
                                    # Each shard draws the whole layer's seeded init (GiBs
                                    # of random numbers) in configure: on 2 cores, 4 at once.
                                    'service_timeout_s': 300.0,
                                    # Multi-GiB checkpoints: only at the end, on each device.
                                    'checkpoint_pull_s': 0.0, 'save_every_s': 0.0,
                                    'save_every_batches': 0})
        run['peak_rss_mib'] = dict(sorted(rss.items()))
        run['oom_kills'] = bench.oom_kills(name)
        too_few = bench.dff(name, config, devices, bench.tmp / 'split_refused', timeout=600,
                            master={'placement': 'pinned', 'shards': [f'1:{args.shards - 1}'],
                                    'pins': pins})
    clean_refusal = ff['returncode'] == 2 and 'needs about' in ff['output']
    refused_split = too_few['returncode'] != 0 and 'needs about' in too_few['output']
    message = ff['output'].strip().splitlines()[-1] if ff['output'].strip() else ''
    fewer = next((line for line in too_few['output'].splitlines() if 'needs about' in line), '')
    print('| system | result | peak resident MiB per device |\n|---|---|---|')
    print(f'| FF, 1 process on 1 device | exit {ff["returncode"]}: {message[:200]} | '
          f'{ff_peak} |')
    result = (f'test accuracy {run["test_accuracy"]:.4f}, {run["train_seconds"]:.0f} s of '
              'training' if run['returncode'] == 0 else f'exit {run["returncode"]}')
    print(f'| DFF, layer 1 in {args.shards} shards on {devices} devices | {result}, OOM kills '
          f'{run["oom_kills"]} | {run["peak_rss_mib"]} |')
    print(f'| DFF, layer 1 in {args.shards - 1} shards | exit {too_few["returncode"]}: '
          f'{fewer.strip()[:240]} | - |')
    fig = memory_figure(run['peak_rss_mib'], args.memory, layer_state, 'layer 1 state, whole')
    save('split', {'cap_mib': args.memory, 'width': width, 'in_features': SPLIT_IN,
                   'shards': args.shards, 'layer_state_bytes': layer_state,
                   'ff': ff, 'ff_peak_rss_mib': ff_peak, 'ff_clean_refusal': clean_refusal,
                   'dff': {**brief(run), 'peak_rss_mib': run['peak_rss_mib'],
                           'oom_kills': run['oom_kills']},
                   'fewer_shards': {'returncode': too_few['returncode'], 'refusal': fewer},
                   'dff_output': run['output']}, fig, bench.tmp)
    return 0 if clean_refusal and refused_split and run['returncode'] == 0 else 1


# ------------------------------------------------------------------------------- links

def links(bench: Bench, args: argparse.Namespace) -> int:
    config = CONFIGS / 'links_mnist.yaml'
    rows = []
    for rate in args.rates:
        for window in args.windows:
            # Every member on the same link, the master too: Fast DDS's reliable UDP has no
            # congestion control, and an unshaped master bursting into a slow device's
            # port overflows its queue; shaped at the sender, the socket waits instead.
            with bench.cluster(2, rate=rate, cpus=args.cpus, master_limits=True) as name:
                run = bench.dff(name, config, 2, bench.tmp / f'links_{rate}_{window}',
                                master={'window': window})
            if run['returncode']:
                raise SystemExit(f'DFF at {rate} failed:\n{run["output"]}')
            rows.append({'rate': rate, 'window': window, **brief(run)})
            print(rows[-1], flush=True)
    print(f'\nlinks: {config.name} on 2 devices of {args.cpus:g} core, 1 epoch of 6000 images')
    print('| link | window | s / epoch | accuracy |\n|---|---|---|---|')
    for r in rows:
        print(f'| {r["rate"]} | {r["window"]} | {r["train_seconds"]:.1f} | '
              f'{r["test_accuracy"]:.4f} |')
    pyplot = plt()
    fig, ax = pyplot.subplots(figsize=(6, 4))
    for window in args.windows:
        mine = [r for r in rows if r['window'] == window]
        ax.plot([r['rate'] for r in mine], [r['train_seconds'] for r in mine], 'o-',
                label=f'window {window}')
    ax.set_ylabel('seconds per epoch')
    ax.legend()
    save('links', {'config': str(config), 'cpus': args.cpus, 'rows': rows}, fig, bench.tmp)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest='which', required=True)
    s = sub.add_parser('scaling')
    s.add_argument('--cpus', type=float, default=0.5)
    s.add_argument('--devices', type=int, nargs='+', default=[1, 2, 4])
    pl = sub.add_parser('placement')
    pl.add_argument('--cpus', type=float, default=0.4)
    pl.add_argument('--devices', type=int, default=3)
    pl.add_argument('--runs', type=int, default=2)
    t = sub.add_parser('thesis')
    t.add_argument('--memory', type=int, default=4096, help='MiB per device')
    t.add_argument('--cpus', type=float, default=0.0)
    sp = sub.add_parser('split')
    sp.add_argument('--memory', type=int, default=5120, help='MiB per device')
    sp.add_argument('--shards', type=int, default=4)
    sp.add_argument('--devices', type=int, default=0, help='default: shards + 1')
    sp.add_argument('--ratio', type=float, default=3.0,
                    help="layer 1's state as a multiple of the cap")
    sp.add_argument('--cpus', type=float, default=0.0)
    rp = sub.add_parser('replicas')
    rp.add_argument('--cpus', type=float, default=0.4)
    rp.add_argument('--runs', type=int, default=2)
    rp.add_argument('--sync-every', type=int, default=100)
    li = sub.add_parser('links')
    li.add_argument('--rates', nargs='+', default=['1gbit', '100mbit', '20mbit'])
    li.add_argument('--windows', type=int, nargs='+', default=[16, 64])
    li.add_argument('--cpus', type=float, default=1.0)
    args = parser.parse_args()
    if not ready_for_clusters('cluster_bench'):
        return 2
    with tempfile.TemporaryDirectory(prefix='dff_cluster_bench_') as tmp:
        return {'scaling': scaling, 'thesis': thesis, 'links': links,
                'placement': placement, 'split': split, 'replicas': replicas}[args.which](
            Bench(Path(tmp)), args)


if __name__ == '__main__':
    sys.exit(main())
