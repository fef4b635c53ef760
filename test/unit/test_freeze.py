"""A process frozen past the participant lease is told from one that is only slow."""
from __future__ import annotations

from pathlib import Path
import re
import threading

from dff_lifecycle.common.freeze import FreezeDetector, FreezeWatch
from dff_lifecycle.common.liveness import HEARTBEAT_LEASE_S, PARTICIPANT_LEASE_S
import pytest

ROS = Path(__file__).resolve().parents[2] / 'dff_lifecycle' / 'ros'


class Clocks:
    """A wall clock and a CPU clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0
        self.cpu = 5.0

    def advance(self, wall: float, cpu: float) -> None:
        self.now += wall
        self.cpu += cpu


def detector(clocks: Clocks, **kwargs) -> FreezeDetector:
    return FreezeDetector(clock=lambda: clocks.now, cpu_clock=lambda: clocks.cpu, **kwargs)


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
