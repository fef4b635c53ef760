"""A process frozen past the participant lease is told from one that is only slow."""
from __future__ import annotations

from pathlib import Path
import re
import signal
import subprocess
import sys
import threading
import time

from dff_lifecycle.common.freeze import FreezeDetector, FreezeWatch
from dff_lifecycle.common.liveness import HEARTBEAT_LEASE_S, PARTICIPANT_LEASE_S
import pytest

ROS = Path(__file__).resolve().parents[2] / 'dff_lifecycle' / 'ros'


class Clocks:
    """A wall clock and a CPU clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0
        self.cpu = 5.0
        self.switches = 0

    def advance(self, wall: float, cpu: float, switches: int = 2) -> None:
        self.now += wall
        self.cpu += cpu
        self.switches += switches


def detector(clocks: Clocks, **kwargs) -> FreezeDetector:
    return FreezeDetector(clock=lambda: clocks.now, cpu_clock=lambda: clocks.cpu,
                          switch_clock=lambda: clocks.switches, **kwargs)


def test_a_stopped_process_is_a_freeze_once_the_gap_passes_the_bound():
    clocks = Clocks()
    watch = detector(clocks)
    clocks.advance(0.25, 0.0)                   # an idle process wakes on time
    assert watch.check() is None
    clocks.advance(2.0, 0.0)                    # stopped, but not past the bound
    assert watch.check() is None
    clocks.advance(6.0, 0.01)                   # SIGSTOP for 6 s
    freeze = watch.check()
    assert freeze is not None and freeze.gap_s == pytest.approx(6.0)
    assert freeze.cpu_s == pytest.approx(0.01)
    clocks.advance(0.25, 0.2)                   # running again: each gap is measured anew
    assert watch.check() is None


def test_a_busy_process_stopped_mid_step_is_still_a_freeze():
    # between its last wake and the stop, and after the resume, the compute threads of a
    # two-core process burn up to a period and a moment each
    clocks = Clocks()
    watch = detector(clocks, cores=2.0)
    clocks.advance(4.0, 2 * 0.05 + 0.08)
    assert watch.check() is not None


def test_a_slow_process_that_burns_cpu_is_not_a_freeze():
    clocks = Clocks()
    watch = detector(clocks)
    # a wake held up 4 s behind the GIL on a 0.15-core device: the holder burns the quota
    clocks.advance(4.0, 0.15 * 4.0)
    assert watch.check() is None
    # the same on a 0.1-core device
    clocks.advance(4.0, 0.1 * 4.0)
    assert watch.check() is None


def test_a_thread_waiting_on_the_gil_without_cpu_is_not_a_freeze():
    # a C call blocked with the GIL held: no CPU, but the watch thread wakes every 5 ms
    # asking for the GIL (582 switches over a 3 s hold, measured)
    clocks = Clocks()
    watch = detector(clocks)
    clocks.advance(3.0, 0.04, switches=582)
    assert watch.check() is None
    clocks.advance(3.0, 0.0, switches=2)       # a SIGSTOP: stopped and resumed, nothing else
    assert watch.check() is not None


WATCHED = """
import ctypes, signal, sys, time
from dff_lifecycle.common.freeze import FreezeDetector, FreezeWatch
watch = FreezeWatch(lambda f: print('freeze', f.text(), flush=True),
                    FreezeDetector(bound_s=0.6, period_s=0.05), stall_dump_s=1.0)
print('ready', flush=True)
if sys.argv[1] == 'hold-gil':
    time.sleep(0.3)
    ctypes.PyDLL(None).usleep(1500000)   # blocks 1.5 s without CPU, holding the GIL
time.sleep(float(sys.argv[2]))
print('done', flush=True)
"""


@pytest.mark.parametrize('case', ['hold-gil', 'sigstop'])
def test_a_real_stop_is_a_freeze_and_a_real_gil_hold_is_not(case):
    child = subprocess.Popen([sys.executable, '-c', WATCHED, case, '2.0'],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == 'ready\n'
        if case == 'sigstop':
            time.sleep(0.3)
            child.send_signal(signal.SIGSTOP)
            time.sleep(1.5)
            child.send_signal(signal.SIGCONT)
        out, err = child.communicate(timeout=30)
    finally:
        child.kill()
    freezes = [line for line in out.splitlines() if line.startswith('freeze')]
    assert out.endswith('done\n'), out
    assert len(freezes) == (1 if case == 'sigstop' else 0), out
    # the watch stalled past stall_dump_s either way: the stacks say where the GIL was held
    assert 'Timeout (0:00:01)!' in err, err
    if case == 'hold-gil':
        assert 'File "<string>", line 9 in <module>' in err, err


def test_the_default_bound_sits_below_the_participant_lease_and_above_the_heartbeat_lease():
    bound = FreezeDetector().bound_s
    assert HEARTBEAT_LEASE_S < bound < PARTICIPANT_LEASE_S


@pytest.mark.parametrize('profile', ['fastdds_profile.xml', 'fastdds_localhost.xml'])
def test_the_participant_lease_is_the_one_the_fastdds_profiles_set(profile):
    text = (ROS / profile).read_text()
    lease = re.search(r'<leaseDuration><sec>(\d+)</sec>', text)
    assert lease is not None and float(lease.group(1)) == PARTICIPANT_LEASE_S


@pytest.mark.parametrize('kwargs', [{'bound_s': 0.0}, {'idle_fraction': 0.0},
                                    {'idle_fraction': 1.0}, {'period_s': 0.0},
                                    {'cores': 0.0}, {'bound_s': 0.04}])
def test_a_detector_refuses_meaningless_bounds(kwargs):
    with pytest.raises(ValueError):
        FreezeDetector(**kwargs)


def test_the_watch_calls_back_once_per_freeze_and_stops():
    clocks = Clocks()
    seen = []
    called = threading.Semaphore(0)

    def on_freeze(freeze):
        seen.append(freeze)
        called.release()

    watch = FreezeWatch(on_freeze, detector(clocks, period_s=0.01))
    clocks.advance(10.0, 0.0)
    assert called.acquire(timeout=5.0)
    clocks.advance(20.0, 0.0)
    assert called.acquire(timeout=5.0)
    watch.stop()
    clocks.advance(30.0, 0.0)
    assert not called.acquire(timeout=0.2)
    assert [round(f.gap_s) for f in seen] == [10, 20]
