"""
Faults on the emulated cluster: kill series, lossy links, a link taken down (root).

    python benchmarks/fault_bench.py kills [--runs 10] [--epochs 3]
    python benchmarks/fault_bench.py loss [--loss 10] [--epochs 1]
    python benchmarks/fault_bench.py linkdown [--seconds 5] [--epochs 3]

Each subcommand runs the shipped deployment (params/mnist_2servers.yaml, recovery on
by default) with `dff_launch --cluster` on two devices, first once undisturbed (the
baseline, in the same invocation), then with the fault; it prints a table and saves
JSON under benchmarks/results/ (machine paths scrubbed).

kills     `kill -9` of a random server container at a random point of training (10 %
          to 80 % of the baseline's training time); every run must end with exit code
          0, the accuracy within 0.5 points of the baseline, and loadable weight files.
loss      drop --loss % of the packets between devices (nftables) for the whole run.
linkdown  take device d2's link down for --seconds mid-run, then up again.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Callable

from cluster_bench import Bench, PY, ready_for_clusters, REPO, RESULTS
from dff_lifecycle.testing.processes import Proc
from portable import scrub

DEPLOYMENT = REPO / 'params' / 'mnist_2servers.yaml'
ACCURACY = re.compile(r'^\[master\] test accuracy: (\d\.\d+)$', re.M)
PID = re.compile(r'^\[dff_launch\] (server_\d+): started with pid (\d+)$', re.M)


class LiveRun:
    """One dff_launch on a cluster (a `Proc`: its output line by line, with arrival times)."""

    def __init__(self, bench: Bench, name: str, out: Path, epochs: int,
                 extra: tuple[str, ...] = ()) -> None:
        self.out = out
        self.proc = Proc('dff_launch', [
            PY, '-m', 'dff_lifecycle.cli.launcher', str(DEPLOYMENT), '--cluster', name,
            '--cluster-state-dir', str(bench.state), '-p', f'epochs:={epochs}',
            '-p', 'master.progress:=false', '-p', f'master.out_dir:={out}', *extra],
            bench.env)

    def wait_for(self, text: str, timeout_s: float) -> float:
        """Return the arrival time of the first line containing `text`."""
        self.proc.wait_for(text, timeout_s)
        return self.proc.arrived(text)

    def text(self) -> str:
        return self.proc.output

    def pid(self, server: str) -> int:
        return int(dict(PID.findall(self.text()))[server])

    def finish(self, timeout_s: float = 1800) -> dict:
        try:
            self.proc.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            pass  # not ended by itself: Ctrl-C, so that dff_launch stops its servers
        code = self.proc.interrupt(120)
        text = self.text()
        match = ACCURACY.search(text)
        result = {'returncode': code, 'accuracy': float(match.group(1)) if match else None,
                  'wall_seconds': round(time.monotonic() - self.proc.started, 2)}
        metrics = self.out / 'metrics.json'
        if metrics.is_file():
            data = json.loads(metrics.read_text())
            result.update(train_seconds=round(data.get('train_seconds', 0.0), 2),
                          recoveries=data.get('recoveries', []))
        if code != 0:
            result['output'] = text[-3000:]
        return result


def fresh_disks(bench: Bench, name: str) -> None:
    """Every run starts from the seeded initialisation: no weights left on any device."""
    for weights in (bench.tmp / name).glob('*/weights'):
        shutil.rmtree(weights, ignore_errors=True)


def weight_files_ok(bench: Bench, name: str) -> tuple[int, list[str]]:
    from dff_lifecycle.core.run.weights import load_state, WeightFileError
    files, bad = 0, []
    for path in (bench.tmp / name).glob('*/weights/**/*.pt'):
        files += 1
        try:
            load_state(path)
        except WeightFileError as exc:
            bad.append(str(exc))
    return files, bad


def baseline(bench: Bench, name: str, epochs: int) -> dict:
    fresh_disks(bench, name)
    run = LiveRun(bench, name, bench.tmp / 'baseline', epochs).finish()
    if run['returncode'] != 0 or run['accuracy'] is None:
        raise SystemExit(f'the undisturbed run failed:\n{run.get("output", "")}')
    print(f'baseline: accuracy {run["accuracy"]:.4f}, training {run["train_seconds"]:.1f} s',
          flush=True)
    return run


def kills(bench: Bench, args: argparse.Namespace) -> dict:
    rng = random.Random(args.seed)
    rows = []
    with bench.cluster(2, cpus=args.cpus, memory=args.memory, rate=args.rate) as name:
        base = baseline(bench, name, args.epochs)
        for i in range(args.runs):
            fresh_disks(bench, name)
            victim = rng.choice(['server_1', 'server_2'])
            fraction = rng.uniform(0.1, 0.8)
            run = LiveRun(bench, name, bench.tmp / f'kill_{i}', args.epochs)
            up = run.wait_for('bring-up:', 300)
            time.sleep(max(0.0, up + fraction * base['train_seconds'] - time.monotonic()))
            killed_at = time.monotonic()
            os.killpg(run.pid(victim), signal.SIGKILL)
            try:
                named = run.wait_for('has not answered for', 60) - killed_at
            except RuntimeError:
                named = None  # training ended before the loss was noticed
            result = run.finish()
            files, bad = weight_files_ok(bench, name)
            diff = (None if result['accuracy'] is None
                    else round(result['accuracy'] - base['accuracy'], 4))
            row = {'run': i, 'killed': victim, 'at_fraction': round(fraction, 3),
                   'detected_s': None if named is None else round(named, 2), **result,
                   'accuracy_diff': diff, 'weight_files': files, 'corrupt': bad,
                   'ok': (result['returncode'] == 0 and diff is not None
                          and abs(diff) <= 0.005 and not bad)}
            rows.append(row)
            print({k: v for k, v in row.items() if k != 'output'}, flush=True)
    survived = sum(r['ok'] for r in rows)
    print(f'\nkill -9 series: {survived} of {len(rows)} runs finished within 0.5 points '
          f'(baseline {base["accuracy"]:.4f}, {base["train_seconds"]:.1f} s of training)')
    print('| run | killed | at | detected s | exit | accuracy | diff | train s |')
    print('|---|---|---|---|---|---|---|---|')
    for r in rows:
        print(f'| {r["run"]} | {r["killed"]} | {r["at_fraction"]:.0%} | {r["detected_s"]} | '
              f'{r["returncode"]} | {r["accuracy"]} | {r["accuracy_diff"]} | '
              f'{r.get("train_seconds")} |')
    return {'baseline': base, 'rows': rows, 'survived': survived, 'tried': len(rows)}


def loss(bench: Bench, args: argparse.Namespace) -> dict:
    runs = {}
    for percent in (0, args.loss):
        with bench.cluster(2, cpus=args.cpus, memory=args.memory, rate=args.rate,
                           loss=percent) as name:
            fresh_disks(bench, name)
            runs[percent] = LiveRun(bench, name, bench.tmp / f'loss_{percent}',
                                    args.epochs).finish()
            print(percent, {k: v for k, v in runs[percent].items() if k != 'output'},
                  flush=True)
    clean, lossy = runs[0], runs[args.loss]
    slowdown = (lossy.get('train_seconds') or 0) / max(clean.get('train_seconds') or 1, 1e-9)
    print(f'\n{args.loss:g} % loss: training {lossy.get("train_seconds")} s vs '
          f'{clean.get("train_seconds")} s ({slowdown:.2f}x); accuracy {lossy["accuracy"]} '
          f'vs {clean["accuracy"]}')
    return {'loss_percent': args.loss, 'clean': clean, 'lossy': lossy,
            'slowdown': round(slowdown, 3)}


def linkdown(bench: Bench, args: argparse.Namespace) -> dict:
    with bench.cluster(2, cpus=args.cpus, memory=args.memory, rate=args.rate) as name:
        base = baseline(bench, name, args.epochs)
        fresh_disks(bench, name)
        run = LiveRun(bench, name, bench.tmp / 'linkdown', args.epochs)
        up = run.wait_for('bring-up:', 300)
        time.sleep(max(0.0, up + 0.3 * base['train_seconds'] - time.monotonic()))
        link = ['ip', 'netns', 'exec', f'{name}-switch', 'ip', 'link', 'set', 'p-d2']
        subprocess.run([*link, 'down'], check=True)
        time.sleep(args.seconds)
        subprocess.run([*link, 'up'], check=True)
        result = run.finish()
        files, bad = weight_files_ok(bench, name)
    result.update(weight_files=files, corrupt=bad)
    print(f'\nlink of d2 down {args.seconds:g} s: exit {result["returncode"]}, accuracy '
          f'{result["accuracy"]} (undisturbed {base["accuracy"]}), training '
          f'{result.get("train_seconds")} s (undisturbed {base["train_seconds"]} s), '
          f'recoveries {result.get("recoveries")}')
    return {'seconds_down': args.seconds, 'baseline': base, 'run': result}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1].strip())
    parser.add_argument('--cpus', type=float, default=1.0, help='cores per device')
    parser.add_argument('--memory', type=int, default=2048, help='MiB per device')
    parser.add_argument('--rate', default='1gbit', help='link rate of every device')
    sub = parser.add_subparsers(dest='which', required=True)
    k = sub.add_parser('kills')
    k.add_argument('--runs', type=int, default=10)
    k.add_argument('--epochs', type=int, default=3)
    k.add_argument('--seed', type=int, default=0)
    lo = sub.add_parser('loss')
    lo.add_argument('--loss', type=float, default=10.0, help='percent of packets dropped')
    lo.add_argument('--epochs', type=int, default=1)
    ld = sub.add_parser('linkdown')
    ld.add_argument('--seconds', type=float, default=5.0)
    ld.add_argument('--epochs', type=int, default=3)
    args = parser.parse_args()
    if not ready_for_clusters('fault_bench'):
        return 2
    run: Callable[[Bench, argparse.Namespace], dict] = {
        'kills': kills, 'loss': loss, 'linkdown': linkdown}[args.which]
    with tempfile.TemporaryDirectory(prefix='dff_fault_bench_') as tmp:
        payload = {'command': ' '.join(['benchmarks/fault_bench.py', *sys.argv[1:]]),
                   'devices': {'cpus': args.cpus, 'memory_mib': args.memory,
                               'rate': args.rate},
                   **run(Bench(Path(tmp)), args)}
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f'faults_{args.which}_{time.strftime("%Y%m%d_%H%M%S")}.json'
        path.write_text(scrub(json.dumps(payload, indent=2, default=str), [Path(tmp)]) + '\n')
        print(f'saved {path.relative_to(REPO)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
