"""
A child process for tests and benchmarks: its own process group, output read line by line.

Every line is kept with its arrival time (`arrived`), so a benchmark can time events
from a process's own output; a wait that fails asks the DFF node processes (`stacks`)
for every thread's stack first, so the failure shows where each one was.
"""
from __future__ import annotations

import os
from pathlib import Path
import signal
import subprocess
import threading
import time
from typing import Callable, Optional

from dff_lifecycle.ros.process import STACK_DUMP_SIGNAL


class Proc:
    """
    A child process whose output is collected line by line.

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
        self.arrivals: list[float] = []  # time.monotonic() of each line
        self.started = time.monotonic()
        self._cond = threading.Condition()
        self.popen = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True,
                                      start_new_session=True, cwd=cwd)
        self._pump_thread = threading.Thread(target=self._pump, daemon=True)
        self._pump_thread.start()

    def _pump(self) -> None:
        for line in self.popen.stdout:
            with self._cond:
                self.lines.append(line.rstrip('\n'))
                self.arrivals.append(time.monotonic())
                self._cond.notify_all()

    def arrived(self, text: str) -> Optional[float]:
        """Return the arrival time of the first line containing `text`; None if none came yet."""
        with self._cond:
            return next((at for at, line in zip(self.arrivals, self.lines) if text in line),
                        None)

    @property
    def output(self) -> str:
        with self._cond:
            return '\n'.join(self.lines)

    def wait_for(self, text: str, timeout_s: float = 60.0) -> str:
        """
        Return the first output line containing `text`.

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
        """Return the exit code once the process exited and its last lines were read."""
        try:
            code = self.popen.wait(timeout_s)
            self._pump_thread.join(2.0)  # a grandchild holding the pipe open must not block
            return code
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
