"""
Telling a process that was frozen from one that was only slow (no torch, no ROS).

A server container stopped (SIGSTOP, a debugger, a paused VM or cgroup freezer) for longer
than the DDS participant lease comes back to a master that has dropped its participant.
Fast DDS then has to rediscover it from one side only, and under load that took 18-36 s
here (its initial ACKNACK backs off by doubling), during which the master hears none of the
returned server's beats or services. A brand-new participant is matched in about 0.2 s. So
a container that finds it was frozen that long starts over as a new participant
(`nodes/server_container.py`, `ros/process.restart_process`); by then the master has moved
its layers anyway.

The rule: a watch thread wakes every `period_s` (50 ms); a wake that comes more than `bound_s`
after the previous one, in which the process used less CPU time than it can burn in one
period and the moment of its resumption (`RESUME_S`) on every core it may use, or than
`idle_fraction` of the gap, and in which the watch thread itself was scheduled fewer than
`FROZEN_SWITCHES` times, was a freeze. The CPU term is what a busy process burns between its
last wake and the stop, and after the resume before the watch thread gets the GIL back. A
process that is only slow keeps running through the gap: a throttled CPU quota delays a wake
by at most one scheduler period (0.1 s), and a thread held up behind the GIL is held up by a
thread that burns the quota (0.15 core over a 2.5 s gap: 0.375 s).

The switch term tells a freeze from a thread that holds the GIL while it waits without CPU (a
C call that blocks without releasing it: CI saw a container's publish to a peer just killed
with -9 hold it for 3 s, using 0.04 s of CPU, and the container restarted for nothing while
it hosted the layer the master was moving). Then the watch thread waits for the GIL, and a
waiter wakes every 5 ms (Python's switch interval) to ask for it: about 200 context switches
a second of its own (measured: 582 over a 3 s hold). A stopped process schedules none of its
threads: the watch thread switches twice (the stop and the resume; measured: 2 over a 3 s
SIGSTOP). The count is the watch thread's own (getrusage RUSAGE_THREAD), so it does not grow
with the process's thread count. Clocks are injected for the tests.
"""
from __future__ import annotations

from dataclasses import dataclass
import faulthandler
import math
import resource
import sys
import threading
import time
from typing import Callable, Optional

from dff_lifecycle.common.liveness import PARTICIPANT_LEASE_S


@dataclass(frozen=True)
class Freeze:
    """A gap between two wakes of the watch, and the CPU the process used in it."""

    gap_s: float
    cpu_s: float
    switches: int = 0

    def text(self) -> str:
        return (f'frozen for {self.gap_s:.1f} s (CPU used meanwhile: {self.cpu_s:.2f} s; '
                f'the watch thread scheduled {self.switches} times)')


RESUME_S = 0.05   # CPU a resumed process's other threads may burn before the watch runs
FROZEN_SWITCHES = 20  # fewer context switches of the watch thread over a gap: it was stopped


def thread_switches() -> int:
    """Context switches of the calling thread so far (voluntary and involuntary)."""
    usage = resource.getrusage(resource.RUSAGE_THREAD)
    return usage.ru_nvcsw + usage.ru_nivcsw


class FreezeDetector:
    """Call `check()` after every wake; it returns the Freeze that ended, if one did."""

    def __init__(self, bound_s: float = PARTICIPANT_LEASE_S - 0.5, period_s: float = 0.05,
                 cores: float = 1.0, idle_fraction: float = 0.05,
                 clock: Callable[[], float] = time.monotonic,
                 cpu_clock: Callable[[], float] = time.process_time,
                 switch_clock: Callable[[], int] = thread_switches) -> None:
        if bound_s <= period_s or period_s <= 0 or cores <= 0 or not 0 < idle_fraction < 1:
            raise ValueError(f'bound_s {bound_s} must exceed period_s {period_s} > 0, cores '
                             f'{cores} be > 0 and idle_fraction {idle_fraction} in (0, 1)')
        self.bound_s = bound_s
        self.period_s = period_s
        self.idle_fraction = idle_fraction
        self.stray_cpu_s = (period_s + RESUME_S) * math.ceil(cores)
        self._clock = clock
        self._cpu_clock = cpu_clock
        self._switch_clock = switch_clock
        self.restart()

    def restart(self) -> None:
        """Measure from now, in the calling thread (the switch count is per thread)."""
        self._last = self._clock()
        self._last_cpu = self._cpu_clock()
        self._last_switches = self._switch_clock()

    def check(self) -> Optional[Freeze]:
        now, cpu, switches = self._clock(), self._cpu_clock(), self._switch_clock()
        gap, used = now - self._last, cpu - self._last_cpu
        scheduled = switches - self._last_switches
        self._last, self._last_cpu, self._last_switches = now, cpu, switches
        if (gap > self.bound_s and used < max(self.stray_cpu_s, self.idle_fraction * gap)
                and scheduled < FROZEN_SWITCHES):
            return Freeze(gap, used, scheduled)
        return None


class Stops:
    """When this process last resumed from a freeze (thread-safe: the watch writes)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._resumed_at: Optional[float] = None

    def record(self, resumed_at: float) -> None:
        with self._lock:
            self._resumed_at = resumed_at

    def resumed_at(self) -> Optional[float]:
        """Return the monotonic time of the last resume; None if never stopped."""
        with self._lock:
            return self._resumed_at


class FreezeWatch:
    """
    A daemon thread that checks a FreezeDetector every period; calls `on_freeze` per freeze.

    With `stall_dump_s`, a watch thread that has not run for that long (it needs the GIL) has
    every thread's Python stack written to stderr by faulthandler's own C thread, which needs
    no GIL: the stack of a call that held the GIL without releasing it, or of the moment a
    frozen process resumed. One process has one such timer (faulthandler's).
    """

    def __init__(self, on_freeze: Callable[[Freeze], None],
                 detector: Optional[FreezeDetector] = None,
                 stall_dump_s: Optional[float] = None) -> None:
        self._on_freeze = on_freeze
        self._detector = detector if detector is not None else FreezeDetector()
        self._period_s = self._detector.period_s
        self._stall_dump_s = stall_dump_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name='freeze-watch', daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        self._detector.restart()
        while not self._stop.wait(self._period_s):
            if self._stall_dump_s is not None:  # re-armed each wake: fires only on a stall
                faulthandler.dump_traceback_later(self._stall_dump_s, file=sys.stderr)
            freeze = self._detector.check()
            if freeze is not None and not self._stop.is_set():
                self._on_freeze(freeze)  # a container's restart does not return
        if self._stall_dump_s is not None:
            faulthandler.cancel_dump_traceback_later()

    def stop(self) -> None:
        self._stop.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=2 * self._period_s + 1.0)  # its last cancel comes first
        if self._stall_dump_s is not None:
            faulthandler.cancel_dump_traceback_later()
