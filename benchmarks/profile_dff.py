"""Where DFF's time goes: py-spy (GIL or CPU samples) on the master and each container, 1 epoch.

    .venv/bin/pip install py-spy    # a profiler, not a dependency of DFF
    .venv/bin/python benchmarks/profile_dff.py [--config params/models/mnist_ff.yaml]

Starts 2 containers and the master (as benchmarks/ff_vs_dff.py does), attaches
`py-spy record --gil` to every process, and writes each raw profile plus a summary
(top functions by GIL samples, self and inclusive; CPU seconds per process) to
benchmarks/results/profiles/<stamp>/.
"""
from __future__ import annotations

import argparse
from collections import Counter
import os
from pathlib import Path
import shutil
import subprocess
import sys
import tempfile
import time

from portable import scrub

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def cpu_seconds(pid: int) -> float:
    fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def summary(raw: Path, top: int = 25) -> str:
    own, inclusive, total = Counter(), Counter(), 0
    for line in raw.read_text().splitlines():
        if not line.strip():
            continue
        stack, count = line.rsplit(' ', 1)
        frames, n = stack.split(';'), int(count)
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    lines = [f'{raw.stem}: {total} samples']
    for title, counter in (('self', own), ('inclusive', inclusive)):
        lines.append(f'  -- {title}')
        lines += [f'  {100 * n / max(total, 1):5.1f}%  {frame[:140]}'
                  for frame, n in counter.most_common(top)]
    return '\n'.join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--config', type=Path, default=REPO / 'params/models/mnist_ff.yaml')
    parser.add_argument('--epochs', type=int, default=1)
    parser.add_argument('--servers', type=int, default=2, help='server containers (default 2)')
    parser.add_argument('--samples', choices=('gil', 'cpu'), default='gil',
                        help='gil: the thread holding the GIL (Python work); cpu: every '
                             'running thread, native frames included (torch, rmw, isal)')
    args = parser.parse_args()
    spy = shutil.which('py-spy') or str(BIN / 'py-spy')
    if not Path(spy).exists():
        print('profile_dff: error: py-spy is not installed (pip install py-spy)', file=sys.stderr)
        return 2
    out = REPO / 'benchmarks' / 'results' / 'profiles' / time.strftime('%Y%m%d_%H%M%S')
    out.mkdir(parents=True)
    from dff_lifecycle.ros.domain_lease import allocate_domain_id
    env = {**os.environ, 'ROS_DOMAIN_ID': str(allocate_domain_id()),
           'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST', 'PYTHONUNBUFFERED': '1'}
    with tempfile.TemporaryDirectory(prefix='dff_profile_') as tmp:
        servers = [subprocess.Popen([str(BIN / 'server_container'), '--ros-args', '-p',
                                     f'server_name:=server_{i}', '-p',
                                     f'weight_dir:={tmp}/w{i}', '-p', 'torch_threads:=1'],
                                    env=env, stdout=subprocess.PIPE, text=True)
                   for i in range(1, args.servers + 1)]
        for server in servers:
            for line in server.stdout:
                if 'up (pid' in line:
                    break
        master = subprocess.Popen([str(BIN / 'master'), '--ros-args', '-p',
                                   f'model_config:={args.config}', '-p',
                                   f'layer_config:={REPO / "params" / "layers.yaml"}',
                                   '-p', f'servers:={args.servers}', '-p', 'progress:=false', '-p',
                                   f'epochs:={args.epochs}', '-p', 'load_weights:=false'],
                                  env=env, stdout=subprocess.PIPE, text=True)
        names = {master.pid: 'master',
                 **{server.pid: f'server_{i}' for i, server in enumerate(servers, 1)}}
        mode = ['--gil'] if args.samples == 'gil' else ['--native']
        spies = [subprocess.Popen([spy, 'record', *mode, '-r', '100', '-f', 'raw', '-o',
                                   str(out / f'{name}.txt'), '--pid', str(pid)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for pid, name in names.items()]
        log, cpu = [], {}
        for line in master.stdout:
            log.append(line)
            if 'training done' in line:  # CPU spent up to the end of training
                cpu = {name: cpu_seconds(pid) for pid, name in names.items()}
        master.wait()
        for server in servers:
            server.terminate()
            server.wait(30)
        for s in spies:
            s.wait(30)
    (out / 'master.log').write_text(scrub(''.join(log), [Path(tmp)]))
    if master.returncode != 0:
        failure = next((line for line in reversed(log) if 'error' in line), log[-1:])
        print(f'profile_dff: error: the master exited {master.returncode}: '
              f'{str(failure).strip()} (log: {out / "master.log"})', file=sys.stderr)
        return 1
    text = [f'config {args.config.name}, {args.epochs} epoch(s); CPU seconds at the end of '
            f'training: {", ".join(f"{k} {v:.1f}" for k, v in cpu.items())}',
            *(line.strip() for line in log if 'training done' in line or 'accuracy:' in line)]
    text += [summary(p) for p in sorted(out.glob('*.txt'))]
    (out / 'summary.txt').write_text('\n\n'.join(text) + '\n')
    print((out / 'summary.txt').read_text()[:3000])
    print(f'saved {out.relative_to(REPO)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
