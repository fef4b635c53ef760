"""Real DFF processes for multi-process tests: server containers and the master.

Every process runs in the isolated environment given by test/ros_env.py and
its own process group, so a failing test never leaves anything running.
"""
from __future__ import annotations

import os
from pathlib import Path
import re
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, Optional

from dff_lifecycle.ros.process import STACK_DUMP_SIGNAL

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LAYER_CONFIG = REPO / 'params' / 'layers.yaml'


def own_pid(proc: 'Proc') -> list[int]:
    """Return the process itself: a DFF node process (it dumps stacks on STACK_DUMP_SIGNAL)."""
    return [proc.popen.pid]


LAUNCHED = re.compile(r'process started with pid \[(\d+)\]$'  # ros2 launch
                      r'|^\[dff_launch\] \S+: started with pid (\d+)$', re.M)  # dff_launch


def launched_pids(proc: 'Proc') -> list[int]:
    """Return the node processes a launcher (ros2 launch or dff_launch) said it started."""
    return [int(a or b) for a, b in LAUNCHED.findall(proc.output)]


class Proc:
    """A child process whose output is collected line by line.

    stacks: the pids of DFF node processes (the child, or children of a launcher) that
    are asked for every thread's stack when a wait fails, so the failure shows where
    each one was, not only what it had printed.
    """

    def __init__(self, name: str, argv: list[str], env: dict[str, str],
                 cwd: Optional[Path] = None,
                 stacks: Optional[Callable[['Proc'], list[int]]] = None) -> None:
        self.name = name
        self.stacks = stacks
        self.weight_dir: Optional[Path] = None
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self.popen = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True,
                                      start_new_session=True, cwd=cwd or REPO)
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.popen.stdout:
            with self._cond:
                self.lines.append(line.rstrip('\n'))
                self._cond.notify_all()

    @property
    def output(self) -> str:
        with self._cond:
            return '\n'.join(self.lines)

    def wait_for(self, text: str, timeout_s: float = 60.0) -> str:
        """Return the first output line containing `text`.

        Raise AssertionError with the log otherwise.
        """
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for line in self.lines:
                    if text in line:
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or (self.popen.poll() is not None and not self._pending()):
                    break
                self._cond.wait(min(left, 0.2))
        self.dump_stacks()
        raise AssertionError(f'{self.name}: no line with {text!r} within {timeout_s} s; '
                             'output:\n' + self.output)

    def dump_stacks(self, settle_s: float = 2.0) -> None:
        """Ask the `stacks` processes still running to print every thread's stack."""
        if self.stacks is None or self.popen.poll() is not None:
            return
        asked = 0
        for pid in self.stacks(self):
            try:
                os.kill(pid, STACK_DUMP_SIGNAL)
                asked += 1
            except (ProcessLookupError, PermissionError):
                continue
        if asked:
            time.sleep(settle_s)  # the dumps reach this process's pipe through the launcher

    def _pending(self) -> bool:
        return self.popen.stdout is not None and not self.popen.stdout.closed

    def wait(self, timeout_s: float = 120.0) -> int:
        try:
            return self.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.dump_stacks()
            self.kill()
            raise AssertionError(f'{self.name} did not exit within {timeout_s} s; output:\n'
                                 + self.output)

    def interrupt(self, timeout_s: float = 20.0) -> int:
        """SIGINT (like Ctrl-C), then the exit code; escalates if it hangs."""
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGINT)
        return self.wait(timeout_s)

    def kill(self) -> None:
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.popen.wait(10)


def ros_args(params: dict) -> list[str]:
    args = ['--ros-args']
    for key, value in params.items():
        if isinstance(value, bool):
            value = 'true' if value else 'false'
        elif isinstance(value, (list, tuple)):
            value = '[' + ','.join(f"'{v}'" for v in value) + ']'
        args += ['-p', f'{key}:={value}']
    return args


def start_server(env: dict[str, str], weight_dir: Path, name: Optional[str] = None,
                 **params) -> Proc:
    return start_servers(env, [weight_dir], name=name, **params)[0]


def start_servers(env: dict[str, str], weight_dirs: list[Path], name: Optional[str] = None,
                  **params) -> list[Proc]:
    """Start one server container per weight dir at once.

    Once all are up, return them sorted by the name each one claimed (which server gets
    which name is a race).
    """
    procs = []
    for weight_dir in weight_dirs:
        settings = {'weight_dir': str(weight_dir), 'torch_threads': 1, **params}
        if name:
            settings['server_name'] = name
        proc = Proc(name or 'server', [str(BIN / 'server_container'), *ros_args(settings)], env,
                    stacks=own_pid)
        proc.weight_dir = weight_dir  # the claimed name decides the order below, not this list
        procs.append(proc)
    try:
        for proc in procs:
            line = proc.wait_for('server container /dff/server_', 60)
            proc.name = line.split('/dff/')[1].split()[0]
    except AssertionError:
        stop_all(procs)
        raise
    return sorted(procs, key=lambda p: p.name)


def start_master(env: dict[str, str], model_config: Path, **params) -> Proc:
    params = {'model_config': str(model_config), 'layer_config': str(LAYER_CONFIG),
              'progress': False, **params}
    return Proc('master', [str(BIN / 'master'), *ros_args(params)], env, stacks=own_pid)


def stop_all(procs: list[Proc]) -> None:
    for proc in reversed(procs):
        try:
            proc.interrupt(20)
        except AssertionError:
            proc.kill()
