"""Training progress: epoch and batch from counts, time left, and the feedback rate limit."""
from dff_lifecycle.master.run_progress import (ProgressClock, remaining_s, Throttle,
                                               TrainingProgress, UNKNOWN)
from fake_clock import FakeClock
import pytest


def test_remaining_is_unknown_until_a_rate_exists():
    assert remaining_s(0, 10, 5.0) == UNKNOWN
    assert remaining_s(1, 10, 5.0, first_done_s=5.0) == UNKNOWN  # only the pipeline fill
    assert remaining_s(3, 0, 5.0) == UNKNOWN


def test_remaining_uses_the_rate_after_the_first_batch():
    # First batch after 4 s (pipeline fill), then 1 s per batch: 7 left take 7 s.
    assert remaining_s(3, 10, 6.0, first_done_s=4.0) == pytest.approx(7.0)
    # Without the first time: the plain average.
    assert remaining_s(5, 10, 10.0) == pytest.approx(10.0)
    assert remaining_s(10, 10, 9.0, first_done_s=1.0) == 0.0


@pytest.mark.parametrize('done, epoch, batch, epochs_done, epoch_end', [
    (0, 1, 0, 0, False),
    (1, 1, 1, 0, False),
    (8, 1, 8, 1, True),      # the end of epoch 1 is still epoch 1, batch 8 of 8
    (9, 2, 1, 1, False),
    (24, 3, 8, 3, True),
])
def test_epoch_and_batch_follow_the_count(done, epoch, batch, epochs_done, epoch_end):
    p = TrainingProgress(done=done, total=24, epochs=3, elapsed_s=1.0)
    assert (p.batches_per_epoch, p.epoch, p.batch, p.epochs_done, p.epoch_end) == \
        (8, epoch, batch, epochs_done, epoch_end)


def test_full_batch_is_one_epoch_of_one_batch():
    p = TrainingProgress(done=1, total=1, epochs=1, elapsed_s=3.0)
    assert (p.epoch, p.batch, p.batches_per_epoch, p.epoch_end, p.epochs_done) == \
        (1, 1, 1, True, 1)


def test_progress_clock_times_from_start_and_remembers_the_first_batch():
    clock = FakeClock()
    progress = ProgressClock(total=10, epochs=2, clock=clock)
    clock.now += 50.0  # bring-up before start() is not training time
    progress.start()
    clock.now += 4.0
    first = progress.progress(1)
    assert (first.elapsed_s, first.remaining_s) == (4.0, UNKNOWN)
    clock.now += 2.0
    third = progress.progress(3)
    assert third.elapsed_s == 6.0
    assert third.remaining_s == pytest.approx(7.0)


def test_throttle_lets_one_through_per_period_unless_forced():
    clock = FakeClock()
    throttle = Throttle(0.2, clock)
    assert throttle.ready()
    clock.now += 0.1
    assert not throttle.ready()
    assert throttle.ready(force=True)      # an epoch end
    clock.now += 0.15
    assert not throttle.ready()            # the forced one restarted the period
    clock.now += 0.05
    assert throttle.ready()
