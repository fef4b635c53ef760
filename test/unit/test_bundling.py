"""The master's bundle sizing: from the measured pace, within latency, bytes and count."""
from __future__ import annotations

from dff_lifecycle.master.bundling import BundleSettings, BundleSizer
import pytest


class Clock:

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def paced(sizer: BundleSizer, clock: Clock, seconds_per_batch: float, batches: int = 8) -> None:
    for _ in range(batches):
        clock.now += seconds_per_batch
        sizer.completed(1)


def auto(clock: Clock, batch_bytes: int = 1000, **kw) -> BundleSizer:
    return BundleSizer(BundleSettings(max_batches=64, **kw), batch_bytes, clock)


def test_one_batch_per_message_until_the_pace_is_measured():
    clock = Clock()
    sizer = auto(clock)
    assert sizer.size() == 1
    sizer.completed(1)
    sizer.completed(1)
    assert sizer.size() == 1  # two marks: no interval yet worth trusting


def test_a_fast_pace_bundles_enough_batches_to_carry_the_target_time():
    clock = Clock()
    sizer = auto(clock)
    paced(sizer, clock, 0.002)
    assert sizer.pace_s() == pytest.approx(0.002)
    assert sizer.size() == 10  # 20 ms of pace


def test_a_slow_stage_keeps_one_batch_per_message():
    clock = Clock()
    sizer = auto(clock)
    paced(sizer, clock, 0.3)
    assert sizer.size() == 1


def test_latency_bytes_and_count_bound_the_bundle():
    clock = Clock()
    latency = auto(clock, target_s=1.0, max_latency_s=0.05)
    paced(latency, clock, 0.001)
    assert latency.size() == 50
    by_bytes = auto(clock, batch_bytes=3 << 20)  # 8 MiB hold two
    paced(by_bytes, clock, 0.0001)
    assert by_bytes.size() == 2
    capped = BundleSizer(BundleSettings(max_batches=4), 10, clock)
    paced(capped, clock, 0.0001)
    assert capped.size() == 4


def test_a_fixed_size_ignores_the_pace():
    sizer = BundleSizer(BundleSettings(max_batches=5, adaptive=False), 10, Clock())
    assert sizer.size() == 5
    with pytest.raises(ValueError):
        BundleSettings(max_batches=0)


def test_bundles_group_consecutive_batches_and_the_last_may_be_partial():
    sizer = BundleSizer(BundleSettings(max_batches=4, adaptive=False), 10, Clock())
    bundles = list(sizer.bundles(range(10), seq_of=lambda b: b))
    assert [b.batches for b in bundles] == [(0, 1, 2, 3), (4, 5, 6, 7), (8, 9)]
    assert [b.seq for b in bundles] == [3, 7, 9]
    assert sizer.sizes == [4, 4, 2]
    assert list(sizer.bundles([], seq_of=lambda b: b)) == []


def test_the_size_follows_the_pace_as_bundles_complete():
    clock = Clock()
    sizer = auto(clock)
    sizes = []
    for bundle in sizer.bundles(range(200), seq_of=lambda b: b):
        sizes.append(len(bundle))
        clock.now += 0.0005 + 0.002 * len(bundle)  # a fixed cost per message, then per batch
        sizer.completed(len(bundle))
    assert sizes[0] == 1
    assert max(sizes) == 10 and sizes[-2] == 10  # 20 ms at the per-batch pace
    assert sum(sizes) == 200
