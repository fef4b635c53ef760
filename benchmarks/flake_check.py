"""
Flake check: each multi-process test module, N runs in a row beside CPU hogs.

    python benchmarks/flake_check.py [--runs 10] [--hogs 2] [MODULE ...]

A test that fails once under load is a bug (in the product or the test), so this runs
every module that starts processes (test/integration, test/e2e, test/cluster where root,
test/ros2_tools) `--runs` times, each run a fresh pytest beside `--hogs` processes that
spin on the cores, and stops a module at its first failure only with `--stop`. It writes
benchmarks/results/flake_check_<stamp>.json after every run and prints the table:

    | module | runs | passed | failed | median s | max s |

The first failure's last output lines are kept in the JSON, to find the cause.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import statistics
import subprocess
import sys
import time

from load import cpu_hogs
from portable import REPO, scrub

RESULTS = REPO / 'benchmarks' / 'results'
GROUPS = ('test/integration', 'test/e2e', 'test/cluster', 'test/ros2_tools')


def modules() -> list[str]:
    found = []
    for group in GROUPS:
        if group == 'test/cluster' and os.geteuid() != 0:
            continue
        found += sorted(str(p.relative_to(REPO)) for p in (REPO / group).glob('test_*.py'))
    return found


def one_run(module: str, timeout_s: float) -> dict:
    started = time.monotonic()
    try:
        done = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
                               module], cwd=REPO, capture_output=True, text=True,
                              timeout=timeout_s)
        code, text = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as exc:
        code, text = 'timeout', f'{exc.stdout or ""}{exc.stderr or ""}'
        text = text if isinstance(text, str) else text.decode(errors='replace')
    seconds = round(time.monotonic() - started, 1)
    # pytest: 0 all passed, 5 nothing collected (a module skipped as a whole is not a pass).
    return {'returncode': code, 'seconds': seconds, 'passed': code == 0,
            'tail': None if code == 0 else scrub(text[-3000:]), 'output': text}


def table(report: dict) -> str:
    lines = ['| module | runs | passed | failed | median s | max s |', '|---|---|---|---|---|---|']
    for module, runs in report['modules'].items():
        seconds = [r['seconds'] for r in runs]
        passed = sum(r['passed'] for r in runs)
        lines.append(f'| {module} | {len(runs)} | {passed} | {len(runs) - passed} | '
                     f'{statistics.median(seconds):.1f} | {max(seconds):.1f} |')
    return '\n'.join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument('modules', nargs='*',
                        help='test modules (default: every multi-process one)')
    parser.add_argument('--runs', type=int, default=10)
    parser.add_argument('--hogs', type=int, default=2)
    parser.add_argument('--timeout', type=float, default=900.0, help='per run (s)')
    parser.add_argument('--stop', action='store_true', help='stop a module at its first failure')
    args = parser.parse_args()
    if args.runs < 1 or args.hogs < 0 or args.timeout <= 0:
        parser.error('--runs must be >= 1, --hogs >= 0, --timeout > 0')
    chosen = args.modules or modules()
    missing = [m for m in chosen if not (REPO / m).is_file()]
    if missing:
        parser.error(f'no such test module: {", ".join(missing)}')
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f'flake_check_{time.strftime("%Y%m%d_%H%M%S")}.json'
    report: dict = {'command': ' '.join(['python', 'benchmarks/flake_check.py', *sys.argv[1:]]),
                    'hogs': args.hogs, 'cpus': os.cpu_count(), 'modules': {}}
    with cpu_hogs(args.hogs):
        for module in chosen:
            runs = report['modules'].setdefault(module, [])
            for i in range(args.runs):
                row = one_run(module, args.timeout)
                output = row.pop('output')
                if not row['passed']:  # the whole of it: the tail rarely holds the cause
                    log = path.with_name(f'{path.stem}_{Path(module).stem}_run{i}.log')
                    log.write_text(scrub(output), encoding='utf-8')
                    row['log'] = str(log.relative_to(REPO))
                runs.append(row)
                print(f'{module} run {i}: {"ok" if row["passed"] else "FAILED"} '
                      f'({row["returncode"]}, {row["seconds"]} s)', flush=True)
                path.write_text(json.dumps(report, indent=2) + '\n')
                if args.stop and not row['passed']:
                    break
    print(table(report))
    print(f'saved {path.relative_to(REPO)}')
    return 0 if all(r['passed'] for runs in report['modules'].values() for r in runs) else 1


if __name__ == '__main__':
    sys.exit(main())
