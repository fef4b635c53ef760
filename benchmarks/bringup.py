"""Bring-up time: create, configure and activate 8 layers over 4 containers.

    .venv/bin/python benchmarks/bringup.py [--runs 5]

Starts 4 server containers once, then runs the master's `bringup` command (deploy,
report, tear down) alternately with parallel lifecycle calls (the default) and one
call after the other (nav2's sequential order, the baseline), and reports medians of
"first create request to last active". JSON goes to benchmarks/results/.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import re
import statistics
import subprocess
import sys
import tempfile
import time

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CONFIG = REPO / 'benchmarks' / 'configs' / 'bringup_8layers.yaml'
BRING_UP = re.compile(r'first create to last active in ([0-9.]+) s')
TARGET_S = 2.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--runs', type=int, default=5)
    parser.add_argument('--servers', type=int, default=4)
    args = parser.parse_args()
    if args.runs < 1 or args.servers < 1:
        parser.error('--runs and --servers must be >= 1')
    from dff_lifecycle.ros.domain_lease import allocate_domain_id
    env = {**os.environ, 'ROS_DOMAIN_ID': str(allocate_domain_id()),
           'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST', 'PYTHONUNBUFFERED': '1'}
    times: dict[str, list[float]] = {'parallel': [], 'sequential': []}
    with tempfile.TemporaryDirectory(prefix='dff_bringup_') as tmp:
        servers = [subprocess.Popen(
            [str(BIN / 'server_container'), '--ros-args', '-p', f'server_name:=server_{i}',
             '-p', f'weight_dir:={Path(tmp) / f"w{i}"}'], env=env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, start_new_session=True)
            for i in range(1, args.servers + 1)]
        try:
            for server in servers:  # each says when it is up (torch warmed)
                for line in server.stdout:
                    if 'up (pid' in line:
                        break
            for _ in range(args.runs):
                for mode in times:
                    done = subprocess.run(
                        [str(BIN / 'master'), '--ros-args', '-p', f'model_config:={CONFIG}',
                         '-p', f'layer_config:={REPO / "params" / "layers.yaml"}',
                         '-p', f'servers:={args.servers}', '-p', 'command:=bringup',
                         '-p', 'load_weights:=false',
                         '-p', f'parallel_bringup:={"true" if mode == "parallel" else "false"}'],
                        env=env, capture_output=True, text=True, timeout=300)
                    match = BRING_UP.search(done.stdout)
                    if done.returncode or not match:
                        raise SystemExit(f'master failed:\n{done.stdout}\n{done.stderr}')
                    times[mode].append(float(match.group(1)))
                    print(f'{mode}: {times[mode][-1]:.2f} s', flush=True)
        finally:
            for server in servers:
                server.terminate()
            for server in servers:
                server.wait(30)
    medians = {mode: statistics.median(t) for mode, t in times.items()}
    print(f'\n8 layers on {args.servers} containers, {args.runs} runs, {os.cpu_count()} cores')
    print('| lifecycle calls | median s | runs | target |\n|---|---|---|---|')
    for mode, t in times.items():
        print(f'| {mode} | {medians[mode]:.2f} | {", ".join(f"{x:.2f}" for x in t)} | '
              f'<= {TARGET_S:g} s |')
    results = REPO / 'benchmarks' / 'results'
    results.mkdir(parents=True, exist_ok=True)
    path = results / f'bringup_{time.strftime("%Y%m%d_%H%M%S")}.json'
    path.write_text(json.dumps({'layers': 8, 'servers': args.servers, 'cores': os.cpu_count(),
                                'seconds': times, 'median_s': medians,
                                'target_s': TARGET_S}, indent=2) + '\n')
    print(f'saved {path.relative_to(REPO)}')
    return 0 if medians['parallel'] <= TARGET_S else 1


if __name__ == '__main__':
    sys.exit(main())
