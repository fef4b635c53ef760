"""The duty cycle that paces checkpoints: a costly chore runs less often, a cheap one not."""
from __future__ import annotations

from dff_lifecycle.common.duty_cycle import DutyCycle
from fake_clock import FakeClock
import pytest


def test_a_cheap_chore_keeps_its_period():
    clock = FakeClock(0.0)
    cycle = DutyCycle(1.0, 0.1, clock=clock)
    assert not cycle.due()
    clock.now = 1.0
    assert cycle.due()
    cycle.run(lambda: clock.sleep(0.01))   # 10 ms: well under a tenth of a second
    assert cycle.interval_s == pytest.approx(1.0)
    clock.now = 2.0
    assert cycle.due()


def test_a_costly_chore_takes_at_most_its_fraction_of_the_time():
    clock = FakeClock(0.0)
    cycle = DutyCycle(1.0, 0.1, clock=clock)
    clock.now = 1.0
    cycle.run(lambda: clock.sleep(2.0))    # a wide layer's save on a slow device
    assert cycle.interval_s == pytest.approx(20.0)
    clock.now = 20.9
    assert not cycle.due() and not cycle.affordable()
    clock.now = 21.0
    assert cycle.due() and cycle.affordable()


def test_runs_measure_even_when_the_chore_fails():
    clock = FakeClock(0.0)
    cycle = DutyCycle(0.0, 0.5, clock=clock)

    def fails():
        clock.sleep(1.0)
        raise OSError('disk full')

    with pytest.raises(OSError):
        cycle.run(fails)
    assert cycle.interval_s == pytest.approx(2.0)


def test_a_fraction_outside_zero_one_is_refused():
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match='fraction'):
            DutyCycle(1.0, bad)
