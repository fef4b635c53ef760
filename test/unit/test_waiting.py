"""The tests' waiting helper, on a fake clock: no wall time spent."""
from __future__ import annotations

from dff_lifecycle.testing.waiting import wait_until
from fake_clock import FakeClock
import pytest


def test_it_returns_as_soon_as_the_condition_holds():
    clock = FakeClock()
    ready_at = clock.now + 3.0
    wait_until(lambda: clock.now >= ready_at, 10, 'three seconds', clock=clock,
               sleep=clock.sleep)
    assert ready_at <= clock.now < ready_at + 0.1


def test_past_its_bound_it_names_what_it_waited_for_and_shows_the_detail():
    clock = FakeClock()
    with pytest.raises(AssertionError, match=r'after 2 s waiting for the first checkpoint\n'
                                             r'master output'):
        wait_until(lambda: False, 2, 'the first checkpoint', detail=lambda: 'master output',
                   clock=clock, sleep=clock.sleep)
    assert 2.0 < clock.now - FakeClock().now < 2.2
