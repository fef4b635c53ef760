"""
dff_launch: run a DFF deployment on this machine, without `ros2 launch`.

    dff_launch params/mnist_2servers.yaml [--servers N] [-p [target.]name:=value ...]
    dff_launch mnist_2servers --dry-run        # a shipped deployment; print the commands

It reads the deployment with dff_lifecycle.deploy.deployment, the description that
launch/dff.launch.py uses too, starts the server containers, waits until each
says it is up, then starts the master. Every output line is prefixed with the
name of its process. When the master exits, or on Ctrl-C / SIGTERM, it stops
the master first and then the servers, each with SIGINT, escalating to SIGTERM
and SIGKILL after timeouts (a second Ctrl-C kills at once). A server that dies
while the master runs is started again (as launch_ros's `respawn`; `--no-respawn`
to leave it dead); the master moves its layers meanwhile. The exit code is the
master's; 1 when it was 0 but a server failed (or died, without respawn).

Overrides: `-p epochs:=1` goes to every process that declares `epochs`;
`-p master.device:=cuda`, `-p servers.torch_threads:=2` and
`-p server_2.weight_dir:=/data/w` choose the processes. A relative weight_dir or
out_dir, in the file or in an override, is taken from the folder dff_launch was
started in (the processes get absolute paths; the launcher prints them first).
"""
from __future__ import annotations

import argparse
from dataclasses import replace
import os
from pathlib import Path
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Callable, IO, Optional, Sequence

from dff_lifecycle.cli.arguments import non_negative_int, non_negative_seconds, positive_int
from dff_lifecycle.common.names import server_name
from dff_lifecycle.deploy.deployment import (Deployment, DeploymentError, find_deployment,
                                             load_deployment, ProcessSpec)
from dff_lifecycle.ros.shm_files import remove_orphans

PROG = 'dff_launch'
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description='Start the server containers and the master of a deployment.',
        epilog='A deployment is a ROS 2 parameter file (see params/*.yaml); a bare name '
               '(mnist_2servers) means a shipped one.')
    parser.add_argument('deployment', help='deployment YAML, or the name of a shipped one')
    parser.add_argument('--servers', type=positive_int, default=None,
                        help="number of server containers (default: the file's servers)")
    parser.add_argument('-p', '--param', dest='params', action='append', default=[],
                        metavar='[TARGET.]NAME:=VALUE',
                        help='parameter override; TARGET: master, servers or server_<n> '
                             '(default: every process that declares NAME)')
    parser.add_argument('--ready-timeout', type=float, default=120.0, metavar='S',
                        help='how long a server may take to come up (default 120)')
    parser.add_argument('--sigint-timeout', type=float, default=30.0, metavar='S',
                        help='wait this long after SIGINT before SIGTERM (default 30)')
    parser.add_argument('--sigterm-timeout', type=float, default=5.0, metavar='S',
                        help='wait this long after SIGTERM before SIGKILL (default 5)')
    parser.add_argument('--no-respawn', dest='respawn', action='store_false',
                        help='leave a server container that died dead (default: start it '
                             'again, at most --max-respawns times)')
    parser.add_argument('--respawn-delay', type=non_negative_seconds, default=1.0, metavar='S',
                        help='wait this long before starting a dead server again (default 1)')
    parser.add_argument('--max-respawns', type=non_negative_int, default=5, metavar='N',
                        help='respawns per server container (default 5)')
    parser.add_argument('--dry-run', action='store_true',
                        help='print the command lines and exit')
    parser.add_argument('--cluster', metavar='NAME', default=None,
                        help='run on an emulated cluster (dff_cluster up): the master on its '
                             'namespace, server_<i> on device d<i> (round robin), weights on '
                             "each device's disk")
    parser.add_argument('--cluster-state-dir', type=Path, default=None, help=argparse.SUPPRESS)
    return parser


def command_line(spec: ProcessSpec, overrides_dir: Optional[Path] = None) -> list[str]:
    """
    Return the argv of a process.

    Its console script beside ours (venv bin/, colcon lib/<pkg>/), else on PATH, else
    `python -m <module>`. With `overrides_dir`, its overrides are written there as a
    parameter file of its own (so they beat the deployment file's sections).
    """
    overrides_file = None
    if overrides_dir is not None and spec.overrides:
        overrides_file = overrides_dir / f'{spec.name}.yaml'
        overrides_file.write_text(spec.overrides_yaml(), encoding='utf-8')
    ros_args = spec.ros_arguments(overrides_file)
    here = Path(sys.argv[0]).resolve().parent
    for candidate in (here / spec.executable, shutil.which(spec.executable)):
        if candidate and os.access(candidate, os.X_OK) and Path(candidate).is_file():
            return [str(candidate), *ros_args]
    return [sys.executable, '-m', spec.module, *ros_args]


def exit_status(returncode: int) -> int:
    """Return a Popen return code as a shell would report it (killed by signal N: 128 + N)."""
    return 128 - returncode if returncode < 0 else returncode


class Child:
    """
    One started process and the thread that copies its output.

    The process runs in its own session (Ctrl-C reaches only the launcher); the thread
    copies its output line by line with a `[name] ` prefix.
    """

    def __init__(self, spec: ProcessSpec, out: 'Output', argv: list[str]) -> None:
        self.spec = spec
        self.name = spec.name
        self.ready = threading.Event()
        self._out = out
        env = dict(os.environ, PYTHONUNBUFFERED='1')
        self.popen = subprocess.Popen(argv, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      env=env, start_new_session=True, text=True,
                                      errors='replace')
        out.say(f'{self.name}: started with pid {self.popen.pid}')
        self._reader = threading.Thread(target=self._copy_output, daemon=True)
        self._reader.start()

    def _copy_output(self) -> None:
        for line in self.popen.stdout:
            line = line.rstrip('\n')
            self._out.line(self.name, line)
            if self.spec.ready_text and self.spec.ready_text in line:
                self.ready.set()

    @property
    def running(self) -> bool:
        return self.popen.poll() is None

    @property
    def returncode(self) -> Optional[int]:
        return self.popen.poll()

    def signal(self, sig: int) -> None:
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            pass

    def wait(self, timeout_s: float, hurry: threading.Event) -> bool:
        """Return True once exited; False after timeout_s or when `hurry` is set."""
        deadline = time.monotonic() + timeout_s
        while self.running:
            if hurry.is_set() or time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def finish_output(self) -> None:
        self._reader.join(timeout=2.0)


class Output:
    """Serialised, prefixed lines on one stream."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        # re-entrant: the signal handler writes from the main thread, maybe mid-write
        self._lock = threading.RLock()

    def line(self, name: str, text: str) -> None:
        with self._lock:
            self._stream.write(f'[{name}] {text}\n')
            self._stream.flush()

    def say(self, text: str) -> None:
        self.line(PROG, text)


class Launcher:

    def __init__(self, deployment: Deployment, args: argparse.Namespace, out: Output,
                 argv_of: Callable[[ProcessSpec], list[str]] = command_line) -> None:
        self.deployment = deployment
        self.argv_of = argv_of
        self.args = args
        self.out = out
        self.stop = threading.Event()    # first Ctrl-C / SIGTERM: stop in order
        self.hurry = threading.Event()   # second one: kill what is left
        self.servers: list[Child] = []
        self.master: Optional[Child] = None
        self.failures: list[str] = []
        self.respawns: dict[str, int] = {}   # server -> times started again
        self.given_up: set[str] = set()       # servers left dead

    def on_signal(self, signum: int, _frame) -> None:
        name = signal.Signals(signum).name
        if self.stop.is_set():
            self.out.say(f'{name} again: killing what is left')
            self.hurry.set()
        else:
            self.out.say(f'{name}: stopping the master, then the servers')
            self.stop.set()

    def run(self) -> int:
        specs = self.deployment.processes()
        try:
            if self._start_servers(specs[:-1]):
                self.master = Child(specs[-1], self.out, self.argv_of(specs[-1]))
                self._supervise()
        finally:
            self._shutdown()
            children = [*self.servers, *([self.master] if self.master else [])]
            if any(exit_status(c.popen.returncode or 0) > 128 for c in children):
                self._release_shared_memory()  # a child was killed (wrapped: 128 + N)
        return self._exit_code()

    def _release_shared_memory(self) -> None:
        """Remove what children killed by a signal left in /dev/shm (`ros/shm_files.py`)."""
        done = remove_orphans()
        if done.files:
            self.out.say(f'removed {done.files} shared-memory files of dead processes '
                         f'({done.size / 2**20:.1f} MiB)')

    def _start_servers(self, specs: list[ProcessSpec]) -> bool:
        """Start every server and wait until each is up; False if that failed or was stopped."""
        for spec in specs:
            self.servers.append(Child(spec, self.out, self.argv_of(spec)))
        deadline = time.monotonic() + self.args.ready_timeout
        while not all(s.ready.is_set() for s in self.servers):
            if self.stop.is_set():
                return False
            for server in self.servers:
                if not server.running:
                    self._fail(f'{server.name} exited with code '
                               f'{exit_status(server.returncode)} before it was up')
                    return False
            if time.monotonic() > deadline:
                late = [s.name for s in self.servers if not s.ready.is_set()]
                self._fail(f'{", ".join(late)} not up after {self.args.ready_timeout:.0f} s')
                return False
            time.sleep(0.05)
        self.out.say(f'{len(self.servers)} server container(s) up: starting the master')
        return True

    def _supervise(self) -> None:
        """Until the master exits or a stop is requested; a dead server is respawned."""
        while self.master.running and not self.stop.is_set():
            for index, server in enumerate(self.servers):
                if server.running or server.name in self.given_up:
                    continue
                code = exit_status(server.returncode)
                server.finish_output()
                if code > 128:  # killed: its shared memory is left behind
                    self._release_shared_memory()
                if self._may_respawn(server):
                    count = self.respawns[server.name] = self.respawns.get(server.name, 0) + 1
                    self.out.say(f'{server.name}: exited with code {code} while the master was '
                                 f'running: respawning in {self.args.respawn_delay:g} s '
                                 f'({count} of {self.args.max_respawns})')
                    if self.stop.wait(self.args.respawn_delay):
                        return
                    self.servers[index] = Child(server.spec, self.out, self.argv_of(server.spec))
                else:
                    self._fail(f'{server.name} exited with code {code} while the master was '
                               'running (not respawned)')
                    self.given_up.add(server.name)
            time.sleep(0.05)

    def _may_respawn(self, server: Child) -> bool:
        return (self.args.respawn and server.spec.respawn
                and self.respawns.get(server.name, 0) < self.args.max_respawns)

    def _fail(self, text: str) -> None:
        self._add_failure(text)
        self.out.say(f'error: {text}')

    def _shutdown(self) -> None:
        """Master first, then the servers (signalled together), each escalating."""
        if self.master is not None:
            self._stop([self.master])
        self._stop(list(reversed(self.servers)))

    def _stop(self, children: list[Child]) -> None:
        live = [c for c in children if c.running]
        for child in live:
            self.out.say(f'{child.name}: sending SIGINT')
            child.signal(signal.SIGINT)
        for timeout_s, escalation in ((self.args.sigint_timeout, signal.SIGTERM),
                                      (self.args.sigterm_timeout, signal.SIGKILL)):
            deadline = time.monotonic() + timeout_s
            for child in live:
                if child.wait(deadline - time.monotonic(), self.hurry):
                    continue
                sig = signal.SIGKILL if self.hurry.is_set() else escalation
                why = 'second interrupt' if self.hurry.is_set() else \
                    f'still running after {timeout_s:g} s'
                self.out.say(f'{child.name}: {why}: sending {sig.name}')
                self._add_failure(f'{child.name} needed {sig.name}')
                child.signal(sig)
            live = [c for c in live if c.running]
        for child in live:
            child.popen.wait()  # gone after SIGKILL
        for child in children:
            self._report_exit(child)

    def _add_failure(self, text: str) -> None:
        if text not in self.failures:
            self.failures.append(text)

    def _report_exit(self, child: Child) -> None:
        code = exit_status(child.popen.wait())
        child.finish_output()  # its last lines before the verdict
        if code == 0:
            self.out.say(f'{child.name}: finished cleanly [pid {child.popen.pid}]')
            return
        self.out.say(f'{child.name}: exited with code {code} [pid {child.popen.pid}]')
        if child is not self.master:  # the master's code is the launcher's exit code
            self._add_failure(f'{child.name} exited with code {code}')

    def _exit_code(self) -> int:
        if self.master is not None and self.master.returncode is not None:
            code = exit_status(self.master.returncode)
        elif self.stop.is_set():
            code = EXIT_INTERRUPTED
        else:
            code = 1
        if code == 0 and self.failures:
            code = 1
        if self.failures:
            self.out.say('problems: ' + '; '.join(self.failures))
        return code


def on_cluster(deployment: Deployment, name: str, state_dir: Optional[Path],
               argv_of: Callable[[ProcessSpec], list[str]]
               ) -> tuple[Deployment, Callable[[ProcessSpec], list[str]]]:
    """Return the deployment with weights on each device, and argv that run there."""
    from dff_lifecycle.cluster.host import ClusterRecord, DEFAULT_STATE_DIR
    from dff_lifecycle.cluster.placement import member_for, on_member, weight_dir
    from dff_lifecycle.cluster.spec import ClusterError
    state_dir = state_dir or DEFAULT_STATE_DIR
    record = ClusterRecord(name, state_dir)
    if not record.exists():
        raise DeploymentError(f'cluster {name!r} is not up (dff_cluster --name {name} up)')
    try:
        spec, _, extra = record.load()
    except ClusterError as err:
        raise DeploymentError(str(err)) from err
    data_dir = Path(extra['data_dir'])
    overrides = {i: dict(o) for i, o in deployment.server_overrides.items()}
    for i in range(1, deployment.servers + 1):
        member = member_for(server_name(i), spec)
        if 'weight_dir' not in overrides.get(0, {}):  # `-p servers.weight_dir:=` wins
            overrides[i] = {'weight_dir': weight_dir(data_dir, member), **overrides.get(i, {})}
    placed = replace(deployment, server_overrides=overrides)

    def placed_argv(process: ProcessSpec) -> list[str]:
        return on_member(argv_of(process), spec, member_for(process.name, spec), state_dir)
    return placed, placed_argv


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    overrides_dir = Path(tempfile.mkdtemp(prefix='dff_launch_'))
    try:
        return _main(args, overrides_dir)
    finally:
        if not args.dry_run:
            shutil.rmtree(overrides_dir, ignore_errors=True)


def _main(args: argparse.Namespace, overrides_dir: Path) -> int:
    def argv_of(spec: ProcessSpec) -> list[str]:
        return command_line(spec, overrides_dir)
    try:
        deployment = load_deployment(find_deployment(args.deployment), servers=args.servers,
                                     overrides=args.params)
        if args.cluster:
            deployment, argv_of = on_cluster(deployment, args.cluster, args.cluster_state_dir,
                                             argv_of)
    except DeploymentError as err:
        print(f'{PROG}: error: {err}', file=sys.stderr)
        return 2
    out = Output(sys.stdout)
    for warning in deployment.warnings:
        out.say(f'warning: {warning}')
    if args.dry_run:
        for spec in deployment.processes():
            print(shlex.join(argv_of(spec)))
        return 0
    out.say(deployment.describe())
    for line in deployment.describe_directories(PROG):
        out.say(line)
    launcher = Launcher(deployment, args, out, argv_of)
    previous = {sig: signal.signal(sig, launcher.on_signal)
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return launcher.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == '__main__':
    sys.exit(main())
