"""
The exit timer, and a node process whose teardown hangs while holding the GIL.

The hang is made with `ctypes.PyDLL(None).sleep`: a C call that keeps the GIL,
as a stuck `rcl_node_fini` does, so no Python-level timer could end it.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap
import time

from dff_processes import REPO

HOLD_THE_GIL = 'import ctypes; ctypes.PyDLL(None).sleep(30)'


def python(code: str, timeout_s: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-c', textwrap.dedent(code)], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout_s)


def test_an_armed_timer_ends_a_process_stuck_in_c_with_the_given_code():
    started = time.monotonic()
    done = python(f"""
        from dff_lifecycle.ros.exit_timer import ExitTimer
        assert ExitTimer().arm(0.3, 7)
        {HOLD_THE_GIL}
        """)
    assert done.returncode == 7, done.stderr
    assert time.monotonic() - started < 15


def test_a_cancelled_timer_leaves_the_process_alone():
    done = python("""
        import time
        from dff_lifecycle.ros.exit_timer import ExitTimer
        timer = ExitTimer()
        assert timer.arm(0.2, 7)
        timer.cancel()
        time.sleep(0.5)
        print('still here')
        """)
    assert done.returncode == 0, done.stderr
    assert done.stdout == 'still here\n'


def hung_teardown(body: str) -> subprocess.CompletedProcess:
    """Run `body` (one line) in a ros_process whose close hangs holding the GIL."""
    return python(f"""
        from dff_lifecycle.ros import process
        def hang(self, timeout_s):
            {HOLD_THE_GIL}
        process.RosProcess.close = hang
        with process.ros_process([], own_context=True, shutdown_timeout_s=0.1) as ros:
            {body}
        """)


def test_a_hung_teardown_ends_with_the_works_code_and_every_threads_stack():
    done = hung_teardown('ros.done(4)')
    assert done.returncode == 4, done.stderr
    assert 'in hang' in done.stderr  # faulthandler's dump names the stuck frame


def test_a_hung_teardown_after_a_failure_ends_with_code_1():
    done = hung_teardown('ros.done(0); raise SystemExit(5)')
    assert done.returncode == 1, done.stderr
