"""
Starvation harness: DFF on devices far below need, beside CPU hogs and tool churn (root).

    python benchmarks/starvation.py [--runs 20] [--cpus 0.15 0.25 0.4] [--hogs 2]
                                    [--kill-run 3] [--model benchmarks/configs/starved_wide.yaml]

One emulated cluster of two devices per CPU quota, then `--runs` runs of the shipped
deployment (params/mnist_2servers.yaml) with a model whose step takes seconds on such a
device (default: benchmarks/configs/starved_wide.yaml, 3000 -> 3000, about 1.4 s a step on
0.15 core, 108 MB checkpoints, 20 batches: enough to leave chance, so a lost or repeated
batch shows in the accuracy). During every run:

- `--hogs` processes spin on the host's cores (`while True: pass`), beside the master;
- tool participants join and leave the graph in a loop on the master's namespace:
  `dff_status --wait 0.5`, `dff_graph --wait 0.2 --timeout 2`, and `ros2 lifecycle get`
  of a layer where the real `ros2` is installed;
- in run `--kill-run` (per quota; -1: none) server_2 is killed with SIGKILL halfway through
  the undisturbed run's training time, and that run must still end with exit code 0.

It reports, per run: exit code, whether the run ended by itself (no timeout), the server
losses the master judged (false unless the run had a real kill), "busy" reports (silent
servers the middleware vouched for), resends and no-progress stalls, test accuracy and
wall time; and per quota the unstarved baseline (the same model on devices of 1 core, no
hogs, no churn) in the same invocation. JSON goes to benchmarks/results/ after every run,
so a cut-short invocation still leaves its rows.

Targets (issue 19): 0 false losses, 0 runs that fail to end, accuracy equal to the
unstarved run, the kill recovered.
"""
from __future__ import annotations

import argparse
from contextlib import contextmanager
import json
import os
from pathlib import Path
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Iterator, Optional

from cluster_bench import Bench, PY, ready_for_clusters, REPO, RESULTS
from fault_bench import fresh_disks, LiveRun
from load import cpu_hogs
from portable import scrub

MODEL = 'benchmarks/configs/starved_wide.yaml'
LOST = re.compile(r'server container (server_\d+) has not answered')
BUSY = re.compile(r'(server_\d+) is busy: no beat')
RESENDS = re.compile(r'resending (\d+) batch')
STALLS = re.compile(r'no progress for')
BIN = Path(sys.executable).parent


class ToolChurn:
    """Tool participants joining and leaving the graph, one after the other, in a loop."""

    def __init__(self, bench: Bench, cluster: str, model: str) -> None:
        run_on = [PY, '-m', 'dff_lifecycle.cli.cluster', '--name', cluster, '--state-dir',
                  str(bench.state), 'exec', 'master', '--']
        self.commands = [run_on + [str(BIN / 'dff_status'), '--wait', '0.5'],
                         run_on + [str(BIN / 'dff_graph'), '--wait', '0.2', '--timeout', '2']]
        if (BIN / 'ros2').exists():
            self.commands.append(run_on + [str(BIN / 'ros2'), 'lifecycle', 'get',
                                           f'/{model}/layer_1'])
        self.env = bench.env
        self.joined = 0
        self.timeouts = 0  # tool runs killed after 60 s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> 'ToolChurn':
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(60)

    def _loop(self) -> None:
        while not self._stop.is_set():
            for command in self.commands:
                if self._stop.is_set():
                    return
                try:
                    subprocess.run(command, env=self.env, capture_output=True, timeout=60)
                except subprocess.TimeoutExpired:  # a tool stuck on a starved graph: counted
                    self.timeouts += 1
                self.joined += 1


def summarise(run: LiveRun, result: dict, timeout_s: float) -> dict:
    text = run.text()
    result.update(
        ended_by_itself=result['wall_seconds'] < timeout_s,
        judged_lost=sorted(set(LOST.findall(text))),
        busy_reports=len(BUSY.findall(text)),
        resent_batches=sum(int(n) for n in RESENDS.findall(text)),
        stalls=len(STALLS.findall(text)))
    result.pop('output', None) if result['returncode'] == 0 else None
    return result


def one_run(bench: Bench, name: str, out: Path, model_name: str, args: argparse.Namespace,
            kill_after_s: Optional[float], churn: bool) -> dict:
    fresh_disks(bench, name)
    shutil.rmtree(out, ignore_errors=True)
    extra = ('-p', f'master.model_config:={args.model}', '-p', 'load_weights:=false')
    run = LiveRun(bench, name, out, args.epochs, extra)
    killed = None
    with ToolChurn(bench, name, model_name) if churn else _nothing() as tools:
        if kill_after_s is not None:
            started = run.wait_for('bring-up:', args.timeout)
            time.sleep(max(0.0, kill_after_s - (time.monotonic() - started)))
            os.killpg(run.pid('server_2'), signal.SIGKILL)
            killed = 'server_2'
        result = run.finish(args.timeout)
    result = summarise(run, result, args.timeout)
    result['killed'] = killed
    result['false_losses'] = len([s for s in result['judged_lost'] if s != killed])
    result['tool_participants'] = tools.joined if churn else 0
    result['tool_timeouts'] = tools.timeouts if churn else 0
    # The same run judged by other rules, from the longest gap between two beats of a
    # server that lived on: a fixed 1 s lease (this project's rule before), nav2's bond (4 s).
    metrics = out / 'metrics.json'
    silences = (json.loads(metrics.read_text()).get('longest_silence_s', {})
                if metrics.is_file() else {})
    result['longest_silence_s'] = silences
    lived = [t for s, t in silences.items() if s != killed]
    result['would_lose_fixed_1s'] = sum(1 for t in lived if t > 1.0)
    result['would_lose_bond_4s'] = sum(1 for t in lived if t > 4.0)
    return result


@contextmanager
def _nothing() -> Iterator[None]:
    yield None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument('--runs', type=int, default=20)
    parser.add_argument('--cpus', type=float, nargs='+', default=[0.15, 0.25, 0.4])
    parser.add_argument('--hogs', type=int, default=2)
    parser.add_argument('--kill-run', type=int, default=3,
                        help='index of the run (per quota) with a kill -9 of server_2 (-1: none)')
    parser.add_argument('--model', default=MODEL)
    parser.add_argument('--epochs', type=int, default=1)
    parser.add_argument('--timeout', type=float, default=900.0,
                        help='a run not ended by itself after this long counts as hung')
    parser.add_argument('--no-churn', action='store_true')
    args = parser.parse_args()
    if args.runs < 1 or args.hogs < 0 or args.epochs < 1 or not args.timeout > 0 or not all(
            0 < c <= 64 for c in args.cpus):
        parser.error('--runs and --epochs must be >= 1, --hogs >= 0, --timeout > 0, and each '
                     '--cpus in (0, 64]')
    if not (REPO / args.model).is_file():
        parser.error(f'no model config at {args.model}')
    if not ready_for_clusters('starvation'):
        return 2
    model_name = re.search(r'^name:\s*(\S+)', (REPO / args.model).read_text(), re.M).group(1)
    stamp = time.strftime('%Y%m%d_%H%M%S')
    path = RESULTS / f'starvation_{stamp}.json'
    report: dict = {'command': ' '.join(['python', 'benchmarks/starvation.py', *sys.argv[1:]]),
                    'model': args.model, 'hogs': args.hogs, 'churn': not args.no_churn,
                    'quotas': []}
    with tempfile.TemporaryDirectory(prefix='dff_starve_') as tmp:
        bench = Bench(Path(tmp))
        for cpus in args.cpus:
            entry: dict = {'cpus': cpus, 'runs': []}
            report['quotas'].append(entry)
            with bench.cluster(2, cpus=1.0, memory=4096, rate='1gbit') as name:
                entry['unstarved'] = one_run(bench, name, bench.tmp / 'base', model_name, args,
                                             None, churn=False)
                print(f'unstarved: {json.dumps(entry["unstarved"])}', flush=True)
            base_train = entry['unstarved'].get('train_seconds') or 60.0
            with bench.cluster(2, cpus=cpus, memory=4096, rate='1gbit') as name, \
                    cpu_hogs(args.hogs):
                for i in range(args.runs):
                    # Halfway through training, as far as the undisturbed run tells.
                    kill_after = (base_train / cpus / 2) if i == args.kill_run else None
                    row = one_run(bench, name, bench.tmp / f'run{i}', model_name, args,
                                  kill_after, churn=not args.no_churn)
                    entry['runs'].append(row)
                    print(f'cpus {cpus} run {i}: {json.dumps(row)}', flush=True)
                    entry['summary'] = summary(entry)
                    path.write_text(scrub(json.dumps(report, indent=2)) + '\n')
            entry['summary'] = summary(entry)
            path.write_text(scrub(json.dumps(report, indent=2)) + '\n')
            print(f'cpus {cpus}: {json.dumps(entry["summary"])}', flush=True)
    print(f'saved {path}')
    return 0


def summary(entry: dict) -> dict:
    runs = entry['runs']
    base = entry['unstarved'].get('accuracy')
    accuracies = [r['accuracy'] for r in runs if r['accuracy'] is not None and not r['killed']]
    walls = sorted(r['wall_seconds'] for r in runs)
    return {
        'runs': len(runs),
        'false_losses': sum(r['false_losses'] for r in runs),
        'runs_not_ended': sum(1 for r in runs if not r['ended_by_itself']),
        'failed_runs': sum(1 for r in runs if r['returncode'] != 0),
        'kills_recovered': sum(1 for r in runs if r['killed'] and r['returncode'] == 0),
        'kills': sum(1 for r in runs if r['killed']),
        'busy_reports': sum(r['busy_reports'] for r in runs),
        'would_lose_fixed_1s': sum(r['would_lose_fixed_1s'] for r in runs),
        'would_lose_bond_4s': sum(r['would_lose_bond_4s'] for r in runs),
        'longest_silence_max_s': max((t for r in runs for s, t in r['longest_silence_s'].items()
                                      if s != r['killed']), default=None),
        'resent_batches': sum(r['resent_batches'] for r in runs),
        'stalls': sum(r['stalls'] for r in runs),
        'accuracy_unstarved': base,
        'accuracy_min_max': [min(accuracies), max(accuracies)] if accuracies else None,
        'accuracy_equal_runs': sum(1 for a in accuracies if base is not None
                                   and abs(a - base) < 1e-9),
        'wall_median_s': walls[len(walls) // 2] if walls else None,
    }


if __name__ == '__main__':
    sys.exit(main())
