"""The failure detector: a steady server is lost after the lease, a slow one is not.

A loss is named once another server's beat, taken after the silent one's deadline, is
EVIDENCE_AGE_S old: at most one beat period (0.25 s here) plus that age after the deadline.
"""
from __future__ import annotations

from dff_lifecycle.master.heartbeats import EVIDENCE_AGE_S, HeartbeatWatch
from fake_clock import FakeClock
import pytest


def watch_of(*servers: str) -> tuple[HeartbeatWatch, FakeClock]:
    clock = FakeClock()
    return HeartbeatWatch(servers, lease_s=1.0, clock=clock), clock


def run(watch: HeartbeatWatch, clock: FakeClock, seconds: float, every: dict[str, float],
        step: float = 0.05) -> None:
    """Advance `seconds`; each server in `every` beats at its own period."""
    due = {s: clock.now + p for s, p in every.items()}
    end = clock.now + seconds
    while clock.now < end - 1e-9:
        clock.now += step
        for server, at in due.items():
            if clock.now >= at - 1e-9:
                watch.beat(server)
                due[server] = at + every[server]


def test_a_steady_server_that_stops_is_lost_after_the_lease_while_others_beat():
    watch, clock = watch_of('a', 'b')
    run(watch, clock, 5.0, {'a': 0.25, 'b': 0.25})
    run(watch, clock, 0.9, {'a': 0.25})
    assert watch.lost() == {}
    run(watch, clock, 0.25 + 0.25 + EVIDENCE_AGE_S, {'a': 0.25})
    assert set(watch.lost()) == {'b'} and watch.alive() == ['a']


def test_a_server_with_long_gaps_gets_twice_its_longest_gap_before_it_is_lost():
    watch, clock = watch_of('a', 'b')
    run(watch, clock, 8.0, {'a': 0.25, 'b': 0.8})   # b is starved: a beat every 0.8 s
    assert watch.tolerance('b') == pytest.approx(1.6, abs=0.06)
    run(watch, clock, 1.3, {'a': 0.25})              # a fixed 1 s lease would drop b here
    assert watch.lost() == {}
    run(watch, clock, 0.3 + 0.25 + EVIDENCE_AGE_S, {'a': 0.25})
    assert set(watch.lost()) == {'b'}


def test_gaps_are_learnt_step_by_step_and_the_tolerance_never_exceeds_four_leases():
    watch, clock = watch_of('a', 'b')
    run(watch, clock, 10.0, {'a': 0.25, 'b': 2.5})  # a gap over the tolerance: a loss each time
    assert watch.tolerance('b') == pytest.approx(1.0)
    for gap, tolerance in ((0.9, 1.8), (1.7, 3.4), (2.5, 4.0)):  # a server slowing down
        run(watch, clock, 10 * gap, {'a': 0.25, 'b': gap})
        assert watch.tolerance('b') == pytest.approx(tolerance, abs=0.11)


def test_nobody_is_lost_while_the_master_hears_no_one_until_four_leases():
    watch, clock = watch_of('a', 'b')
    run(watch, clock, 3.0, {'a': 0.25, 'b': 0.25})
    clock.now += 3.5                  # the master's executor starved, or both died
    assert watch.lost() == {} and watch.alive() == ['a', 'b']
    run(watch, clock, 0.25, {'a': 0.25, 'b': 0.25})  # the backlog arrives: both fine
    assert watch.lost() == {}
    clock.now += 4.1                  # both really silent
    assert set(watch.lost()) == {'a', 'b'} and watch.alive() == []


def test_a_master_stall_shorter_than_the_lease_drops_nobody_whatever_the_phase_of_the_beats():
    """The case CI met: b's last beat a fifth of a second older than a's, then a stall."""
    watch, clock = watch_of('a', 'b')
    for _ in range(20):
        watch.beat('b')
        clock.now += 0.2
        watch.beat('a')
        clock.now += 0.05
    clock.now += 0.8                  # the master takes no beats: b silent 1.05 s, a 0.85 s
    assert watch.lost() == {}
    watch.beat('a')                   # the backlog, a's beat taken first ...
    assert watch.lost() == {}
    clock.now += 0.002
    watch.beat('b')                   # ... and b's a moment later
    assert watch.lost() == {} and watch.alive() == ['a', 'b']


def test_a_lone_server_is_lost_after_four_leases_since_nobody_else_can_vouch_for_the_master():
    watch, clock = watch_of('a')
    run(watch, clock, 3.0, {'a': 0.25})
    clock.now += 3.9
    assert watch.lost() == {}
    clock.now += 0.2
    assert set(watch.lost()) == {'a'}


def test_a_loss_is_not_learnt_as_jitter_when_the_server_comes_back():
    watch, clock = watch_of('a', 'b')
    run(watch, clock, 3.0, {'a': 0.25, 'b': 0.25})
    run(watch, clock, 3.0, {'a': 0.25})           # b lost (a respawn takes seconds)
    assert set(watch.lost()) == {'b'}
    run(watch, clock, 2.0, {'a': 0.25, 'b': 0.25})
    assert watch.lost() == {} and watch.tolerance('b') == pytest.approx(1.0)


def test_a_server_never_heard_is_neither_lost_nor_alive():
    watch, clock = watch_of('a', 'b')
    run(watch, clock, 10.0, {'a': 0.25})
    assert watch.lost() == {} and watch.alive() == ['a'] and watch.heard() == {'a'}


# ------------------------------------------------ the middleware's liveliness: busy != dead
def alive_by_middleware(watch: HeartbeatWatch, *servers: str) -> None:
    for server in servers:
        watch.liveliness(server, True)


def test_a_busy_server_whose_process_lives_is_never_lost_only_reported_busy():
    watch, clock = watch_of('server_1', 'server_2')
    run(watch, clock, 2.0, {'server_1': 0.25, 'server_2': 0.25})
    alive_by_middleware(watch, 'server_1', 'server_2')
    # server_2's Python is busy for 30 s (a wide layer's step, a checkpoint holding the GIL):
    # no beat, but Fast DDS keeps asserting its liveliness from its own threads.
    run(watch, clock, 30.0, {'server_1': 0.25})
    assert watch.lost() == {}
    assert set(watch.busy()) == {'server_2'}
    assert watch.alive() == ['server_1', 'server_2']
    watch.beat('server_2', stamp=1)
    assert watch.busy() == {}


def test_a_killed_server_is_named_soon_after_the_middleware_says_it_is_gone():
    watch, clock = watch_of('server_1', 'server_2')
    run(watch, clock, 2.0, {'server_1': 0.25, 'server_2': 0.25})
    alive_by_middleware(watch, 'server_1', 'server_2')
    killed_at = clock.now
    run(watch, clock, 1.0, {'server_1': 0.25})
    watch.liveliness('server_2', False)        # the liveliness lease (1 s) ran out
    named = None
    for step in range(1, 41):
        clock.sleep(0.05)
        if step % 5 == 0:
            watch.beat('server_1')
        if 'server_2' in watch.lost():
            named = clock.now - killed_at
            break
    assert named is not None and named <= 1.0 + 0.25 + EVIDENCE_AGE_S + 0.05 + 1e-9


def test_a_late_beat_after_the_middleware_gave_up_does_not_revive_a_dead_server():
    watch, clock = watch_of('server_1', 'server_2')
    run(watch, clock, 2.0, {'server_1': 0.25, 'server_2': 0.25})
    alive_by_middleware(watch, 'server_1', 'server_2')
    run(watch, clock, 0.9, {'server_1': 0.25})
    watch.liveliness('server_2', False)
    watch.beat('server_2')                     # delivered late by the master's executor
    run(watch, clock, 1.5, {'server_1': 0.25})
    assert 'server_2' in watch.lost()


def test_an_executor_stuck_in_a_callback_is_hung_once_its_stamp_stops_moving():
    watch, clock = watch_of('server_1', 'server_2')
    alive_by_middleware(watch, 'server_1', 'server_2')
    for tick in range(8):                      # both progress
        clock.sleep(0.25)
        watch.beat('server_1', stamp=tick)
        watch.beat('server_2', stamp=tick)
    stuck = clock.now
    while clock.now - stuck < watch.hang_s - 0.5:
        clock.sleep(0.25)
        watch.beat('server_1', stamp=clock.now)
        watch.beat('server_2', stamp=7)        # its beat thread lives, its executor does not
    assert watch.lost() == {}
    clock.sleep(1.0)
    watch.beat('server_2', stamp=7)
    assert set(watch.lost()) == {'server_2'}


def test_when_the_middleware_drops_everyone_at_once_nobody_is_lost_before_four_leases():
    """The master's own DDS starved: every lease ran out together, nobody can vouch."""
    watch, clock = watch_of('server_1', 'server_2')
    run(watch, clock, 2.0, {'server_1': 0.25, 'server_2': 0.25})
    alive_by_middleware(watch, 'server_1', 'server_2')
    clock.sleep(1.0)
    watch.liveliness('server_1', False)
    watch.liveliness('server_2', False)
    clock.sleep(watch.max_lease_s - 1.1)
    assert watch.lost() == {}
    alive_by_middleware(watch, 'server_1', 'server_2')   # the master's DDS caught up
    clock.sleep(5.0)
    assert watch.lost() == {}


def test_a_server_that_beats_within_the_lease_is_not_lost_whatever_the_middleware_said():
    watch, clock = watch_of('server_1', 'server_2')
    alive_by_middleware(watch, 'server_1', 'server_2')
    watch.liveliness('server_2', False)
    run(watch, clock, 3.0, {'server_1': 0.25, 'server_2': 0.25})
    assert watch.lost() == {}


def test_the_longest_silence_of_each_server_is_kept_for_the_runs_metrics():
    watch, clock = watch_of('server_1', 'server_2')
    watch.beat('server_1')
    watch.beat('server_2')
    clock.sleep(0.25)
    watch.beat('server_1')
    clock.sleep(3.0)
    watch.beat('server_1')
    watch.beat('server_2')
    assert watch.longest_silences() == pytest.approx({'server_1': 3.0, 'server_2': 3.25})
