"""
dff_cluster: turn this machine into an emulated cluster of small devices (needs root).

    dff_cluster up --devices 4 --cpus 0.5 --memory 1500 --rate 100mbit [--loss 1]
    dff_cluster status
    dff_cluster exec d2 -- server_container --ros-args ...   # run on device d2
    dff_launch params/mnist_2servers.yaml --cluster dff      # a deployment across it
    dff_cluster run --devices 2 -- dff_launch mnist_2servers --cluster dff
    dff_cluster down

Each device is a network namespace with a veth on a bridge that lives in its own
namespace (addresses 198.18.0.0/24, no route out), optionally a tbf-shaped link and
nftables packet loss, a cgroup v1 CPU quota (and cpuset with --pin) and memory cap,
and a data directory (its "local disk"). The master has a namespace too. `up` is
idempotent; `down`, and the end of `run` (Ctrl-C included), remove exactly what `up`
made.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
import shlex
import signal
import subprocess
import sys
from typing import Optional, Sequence

from dff_lifecycle.cluster.host import (cluster_down, cluster_up, ClusterRecord,
                                        DEFAULT_STATE_DIR, enter, Host)
from dff_lifecycle.cluster.spec import ClusterError, ClusterSpec, format_rate, parse_rate

PROG = 'dff_cluster'
DEFAULT_DATA_DIR = Path(os.environ.get('DFF_CLUSTER_DATA_ROOT', '/var/tmp/dff_cluster'))


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected a number, got {text!r}') from None


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected a whole number, got {text!r}') from None


def _rate(text: str) -> int:
    try:
        return parse_rate(text)
    except ClusterError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split('\n\n')[0].strip(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog='\n\n'.join(__doc__.split('\n\n')[1:]))
    parser.add_argument('--name', default=os.environ.get('DFF_CLUSTER', 'dff'),
                        help='cluster name, prefix of its namespaces (default: dff)')
    parser.add_argument('--state-dir', type=Path, default=DEFAULT_STATE_DIR,
                        help=f'where the record of what was made lives ({DEFAULT_STATE_DIR})')
    commands = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')

    def shape_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument('--devices', type=_whole, default=2, help='number of devices (2)')
        sub.add_argument('--cpus', type=_number, default=0.0,
                         help='CPU share per device in cores, e.g. 0.5 (default: unlimited)')
        sub.add_argument('--pin', action='store_true',
                         help='give each device its own cores (cpuset), round robin')
        sub.add_argument('--memory', type=_whole, default=0, metavar='MIB',
                         help='memory cap per device in MiB (default: unlimited)')
        sub.add_argument('--rate', type=_rate, default=0,
                         help='link rate per device, both ways: 1gbit, 100mbit, 20mbit')
        sub.add_argument('--loss', type=_number, default=0.0, metavar='PERCENT',
                         help="random loss of each device's outgoing UDP packets")
        sub.add_argument('--master-limits', action='store_true',
                         help="apply the device limits to the master's namespace too")
        sub.add_argument('--data-dir', type=Path, default=None,
                         help=f"devices' local disks (default {DEFAULT_DATA_DIR}/<name>)")

    shape_options(commands.add_parser('up', help='make the cluster (idempotent)'))
    commands.add_parser('down', help='remove everything `up` made')
    commands.add_parser('status', help='what the cluster is and what runs on it')
    run = commands.add_parser('run', help='up, run a command, down (also on Ctrl-C)')
    shape_options(run)
    run.add_argument('argv', nargs=argparse.REMAINDER, help='-- command and arguments')
    ex = commands.add_parser('exec', help='run a command on a device (master, d1, 2, ...)')
    ex.add_argument('member')
    ex.add_argument('argv', nargs=argparse.REMAINDER, help='-- command and arguments')
    return parser


def spec_from(args: argparse.Namespace) -> ClusterSpec:
    return ClusterSpec(name=args.name, devices=args.devices, cpus=args.cpus, pin=args.pin,
                       memory_mib=args.memory, rate_bps=args.rate, loss_percent=args.loss,
                       master_limits=args.master_limits)


def data_dir_of(args: argparse.Namespace) -> Path:
    return (args.data_dir or DEFAULT_DATA_DIR / args.name).resolve()


def _command(argv: Sequence[str]) -> list[str]:
    argv = list(argv)
    if argv[:1] == ['--']:
        argv = argv[1:]
    if not argv:
        raise ClusterError('nothing to run: give a command after --')
    return argv


def status(args: argparse.Namespace, record: ClusterRecord) -> str:
    if not record.exists():
        return f'cluster {args.name!r} is not up'
    spec, _, extra = record.load()
    lines = [spec.describe(), f'data: {extra.get("data_dir", "?")}']
    for member in spec.members:
        pids = subprocess.run(['ip', 'netns', 'pids', spec.netns(member)],
                              capture_output=True, text=True).stdout.split()
        memory = ''
        if spec.memory_mib and spec.limited(member):
            peak = Path(f'/sys/fs/cgroup/memory/{spec.cgroup(member)}/memory.max_usage_in_bytes')
            try:
                memory = f', peak memory {int(peak.read_text()) >> 20} MiB'
            except OSError:
                pass
        lines.append(f'  {member:<7} {spec.netns(member):<14} {spec.address(member)!s:<13} '
                     f'{len(pids)} process(es){memory}')
    lines.append(f'  links: {format_rate(spec.rate_bps)}')
    return '\n'.join(lines)


def run_command(spec: ClusterSpec, args: argparse.Namespace, host: Host,
                record: ClusterRecord) -> int:
    argv = _command(args.argv)
    made = not record.exists()
    env = dict(os.environ, DFF_CLUSTER=spec.name, DFF_CLUSTER_STATE=str(args.state_dir))
    child = None

    def interrupt(_signum, _frame) -> None:
        raise KeyboardInterrupt
    # Explicit, and before `up`: a shell's background job inherits SIGINT ignored, and
    # Ctrl-C at any point must still end in `down` (an interrupted `up` undoes itself).
    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        print(cluster_up(spec, host, record, data_dir_of(args)), flush=True)
        child = subprocess.Popen(argv, env=env)
        print(f'running {shlex.join(argv)} (pid {child.pid}); Ctrl-C stops it and removes '
              'the cluster', flush=True)
        return child.wait()
    except FileNotFoundError:
        raise ClusterError(f'cannot run {argv[0]!r}: no such command') from None
    except KeyboardInterrupt:
        if child is not None:
            child.send_signal(signal.SIGINT)
            try:
                child.wait(timeout=60)
            except (subprocess.TimeoutExpired, KeyboardInterrupt):
                child.kill()
        return 130
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if made and record.exists():
            print(cluster_down(spec.name, host, record), flush=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    record = ClusterRecord(args.name, args.state_dir)
    host = Host()
    try:
        if args.command in ('up', 'run'):
            spec = spec_from(args)
            if args.command == 'run':
                return run_command(spec, args, host, record)
            print(cluster_up(spec, host, record, data_dir_of(args)))
        elif args.command == 'down':
            print(cluster_down(args.name, host, record))
        elif args.command == 'status':
            print(status(args, record))
        elif args.command == 'exec':
            if not record.exists():
                raise ClusterError(f'cluster {args.name!r} is not up (dff_cluster up first)')
            spec, _, extra = record.load()
            enter(spec, spec.resolve_member(args.member), Path(extra['data_dir']),
                  _command(args.argv))
        return 0
    except ClusterError as err:
        print(f'{PROG}: error: {err}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f'{PROG}: interrupted', file=sys.stderr)
        return 130


if __name__ == '__main__':
    sys.exit(main())
