"""Windowed streaming, driven like nav2's stub-driven manager test.

A scripted fake pipeline and a fake clock stand in for the layers and for time.
"""
from __future__ import annotations

from dataclasses import dataclass

from dff_lifecycle.master.errors import PipelineError
from dff_lifecycle.master.streaming import Streamer, StreamSettings
import pytest


@dataclass(frozen=True)
class Item:
    seq: int


class FakePipeline:
    """Acknowledges what was sent, `rate` items per wait, unless paused or stuck.

    Time only passes in `wait`, by the timeout asked for, as a real wait would
    when nothing happens.
    """

    def __init__(self, rate: int = 1) -> None:
        self.now = 0.0
        self.rate = rate
        self.sent: list[int] = []
        self.acked = -1
        self.states: dict[int, str] = {}
        self.stuck = False
        self.errors_: dict[int, str] = {}
        self.script: dict[int, callable] = {}  # wait number -> action
        self.waits = 0

    def clock(self) -> float:
        return self.now

    def send(self, item: Item) -> None:
        self.sent.append(item.seq)

    def done_through(self) -> int:
        return self.acked

    def wait(self, timeout_s: float) -> None:
        self.waits += 1
        self.now += timeout_s
        action = self.script.get(self.waits)
        if action is not None:
            action(self)
        if self.stuck or self.states:
            return
        highest = max(self.sent, default=-1)
        self.acked = min(highest, self.acked + self.rate)

    def not_active(self) -> dict[int, str]:
        return dict(self.states)

    def errors(self) -> dict[int, str]:
        return dict(self.errors_)

    beacon_at = None  # when a layer last said "still computing"

    def computing_at(self):
        return self.beacon_at


def settings(**overrides) -> StreamSettings:
    values = {'window': 4, 'stall_limit_s': 5.0, 'pause_timeout_s': 30.0, 'max_resends': 2,
              'poll_s': 0.2}
    values.update(overrides)
    return StreamSettings(**values)


def run(pipeline: FakePipeline, n: int, logs: list | None = None, checks: list | None = None,
        **overrides) -> list[int]:
    done: list[int] = []
    streamer = Streamer(settings(**overrides), pipeline, {0: '/m/layer_0', 1: '/m/layer_1'},
                        clock=pipeline.clock, log=(logs if logs is not None else []).append,
                        health_check=(checks if checks is not None else []).append)
    streamer.stream((Item(i) for i in range(n)), pipeline.send, pipeline.done_through,
                    lambda item: done.append(item.seq), what='training')
    return done


def test_every_item_completes_once_in_order_with_the_window_bounding_what_is_in_flight():
    pipeline = FakePipeline(rate=1)
    inflight_max = 0
    original = pipeline.send

    def send(item: Item) -> None:
        nonlocal inflight_max
        original(item)
        inflight_max = max(inflight_max, item.seq - pipeline.acked)

    pipeline.send = send
    assert run(pipeline, 10) == list(range(10))
    assert pipeline.sent == list(range(10))  # nothing resent
    assert inflight_max == 4


def test_an_empty_stream_sends_nothing():
    pipeline = FakePipeline()
    assert run(pipeline, 0) == [] and pipeline.sent == []


def test_a_window_of_one_sends_one_item_at_a_time():
    pipeline = FakePipeline(rate=5)
    assert run(pipeline, 3, window=1) == [0, 1, 2]


def test_the_health_check_runs_on_every_look_and_can_end_the_stream():
    checks: list[str] = []
    run(FakePipeline(), 3, checks=checks)
    assert checks and set(checks) == {'training'}

    def dead(what: str) -> None:
        raise PipelineError(f'{what} stopped: gone')

    pipeline = FakePipeline()
    streamer = Streamer(settings(), pipeline, {}, clock=pipeline.clock, log=lambda _t: None,
                        health_check=dead)
    with pytest.raises(PipelineError, match='training stopped: gone'):
        streamer.stream([Item(0)], pipeline.send, pipeline.done_through, lambda _i: None,
                        'training')


def test_a_stall_resends_what_is_in_flight_and_progress_resets_the_count():
    pipeline = FakePipeline()
    pipeline.script[1] = lambda p: setattr(p, 'stuck', True)
    unstick_at = int(5.0 / 0.2) + 5  # after the first resend
    pipeline.script[unstick_at] = lambda p: setattr(p, 'stuck', False)
    logs: list[str] = []
    assert run(pipeline, 6, logs=logs) == list(range(6))
    assert pipeline.sent[:4] == [0, 1, 2, 3] and pipeline.sent[4:8] == [0, 1, 2, 3]
    assert sum('no progress' in line for line in logs) == 1


def test_too_many_resends_without_progress_give_up_naming_layer_errors():
    pipeline = FakePipeline()
    pipeline.stuck = True
    pipeline.errors_ = {1: 'processing failed: boom'}
    with pytest.raises(PipelineError) as err:
        run(pipeline, 3, max_resends=2)
    assert '/m/layer_1' in str(err.value) and 'boom' in str(err.value)
    assert pipeline.sent == [0, 1, 2] * 3  # first send and two resends
    assert pipeline.now == pytest.approx(3 * 5.2, abs=0.5)


def test_a_paused_layer_holds_the_stream_and_everything_in_flight_is_resent_on_resume():
    pipeline = FakePipeline()
    pipeline.script[2] = lambda p: p.states.update({1: 'inactive'})
    pipeline.script[40] = lambda p: p.states.clear()
    logs: list[str] = []
    assert run(pipeline, 8, logs=logs) == list(range(8))
    paused = [line for line in logs if 'paused' in line]
    assert paused and '/m/layer_1 is inactive' in paused[0]
    assert any('active again: resending' in line for line in logs)
    assert sorted(set(pipeline.sent)) == list(range(8))
    assert len(pipeline.sent) > 8  # the in-flight items went out again
    # While paused nothing new was sent: the window (after item 0 was acknowledged), then
    # exactly those items again on resume, then the rest.
    assert pipeline.sent[:9] == [0, 1, 2, 3, 4, 1, 2, 3, 4]


def test_a_pause_that_outlasts_pause_timeout_fails():
    pipeline = FakePipeline()
    pipeline.states = {0: 'inactive'}
    with pytest.raises(PipelineError, match='inactive for 3 s'):
        run(pipeline, 2, pause_timeout_s=3.0)
    assert pipeline.now < 4.0


@pytest.mark.parametrize('state, words', [('unconfigured', 'configure and activate it again'),
                                          ('finalized', 'cannot come back')])
def test_a_layer_that_cannot_resume_by_itself_ends_the_stream_at_once(state, words):
    pipeline = FakePipeline()
    pipeline.script[1] = lambda p: p.states.update({1: state})
    with pytest.raises(PipelineError) as err:
        run(pipeline, 5)
    assert words in str(err.value) and f'/m/layer_1 is {state}' in str(err.value)
    assert pipeline.now < 1.0


def test_the_health_check_also_runs_while_paused():
    pipeline = FakePipeline()
    pipeline.states = {0: 'inactive'}
    calls: list[str] = []

    def check(what: str) -> None:
        calls.append(what)
        if len(calls) > 3:
            raise PipelineError('server gone')

    streamer = Streamer(settings(), pipeline, {}, clock=pipeline.clock, log=lambda _t: None,
                        health_check=check)
    with pytest.raises(PipelineError, match='server gone'):
        streamer.stream([Item(0)], pipeline.send, pipeline.done_through, lambda _i: None, 'x')


def test_a_window_below_one_is_refused():
    with pytest.raises(ValueError):
        Streamer(settings(window=0), FakePipeline(), {})


class Resume:
    """A recovery notice: replay what the restored layers had not trained."""

    def __init__(self, after):
        self.after = after

    def replay_after(self, stream):
        assert stream == 'train_x'
        return self.after


def test_a_recovery_resends_the_window_and_replays_after_the_checkpoint():
    pipeline = FakePipeline(rate=1)
    logs: list[str] = []
    notices = {12: Resume(3)}  # on the 12th look: layers restored from a checkpoint at #3
    looks = []

    def check(_what):
        looks.append(1)
        return notices.get(len(looks))

    streamer = Streamer(settings(window=4, replay=100), pipeline, {0: '/m/layer_0'},
                        clock=pipeline.clock, log=logs.append, health_check=check)
    done: list[int] = []
    streamer.stream((Item(i) for i in range(20)), pipeline.send, pipeline.done_through,
                    lambda item: done.append(item.seq), what='training', stream_id='train_x')
    assert done == list(range(20))
    first = len(pipeline.sent) - 20  # items sent again
    completed = 11 - 1  # items 0..10 were acknowledged by look 11
    replayed = list(range(4, completed + 1))
    assert first == len(replayed) + 4  # the replay, then the window in flight
    assert any('replaying' in line for line in logs)


def test_a_recovery_without_losses_resends_only_the_window():
    pipeline = FakePipeline(rate=1)
    looks = []

    def check(_what):
        looks.append(1)
        return Resume(None) if len(looks) == 6 else None

    streamer = Streamer(settings(window=4, replay=100), pipeline, {0: '/m/layer_0'},
                        clock=pipeline.clock, log=[].append, health_check=check)
    streamer.stream((Item(i) for i in range(10)), pipeline.send, pipeline.done_through,
                    lambda item: None, what='training', stream_id='train_x')
    assert len(pipeline.sent) == 10 + 4


def test_a_layer_that_says_it_is_still_computing_is_not_a_stall_until_the_hang_limit():
    """A 30 s step (a wide layer on a starved device) beacons every 2 s: no resend."""
    pipeline = FakePipeline()
    pipeline.stuck = True

    def beacon_then_finish(p: FakePipeline) -> None:
        if p.now < 30.0:
            if int(p.now * 5) % 10 == 0:   # every 2 s
                p.beacon_at = p.now
        else:
            p.stuck = False
    pipeline.script = {i: beacon_then_finish for i in range(1, 400)}
    logs: list[str] = []
    assert run(pipeline, 2, logs, window=2) == [0, 1]
    assert pipeline.sent == [0, 1] and not [line for line in logs if 'resending' in line]


def test_beacons_without_a_completed_item_count_only_up_to_the_hang_limit():
    pipeline = FakePipeline()
    pipeline.stuck = True

    def beacon(p: FakePipeline) -> None:
        p.beacon_at = p.now                 # it says so forever: a hung step
    pipeline.script = {i: beacon for i in range(1, 2000)}
    logs: list[str] = []
    with pytest.raises(PipelineError, match='no progress'):
        run(pipeline, 1, logs, hang_limit_s=20.0, max_resends=1)
    assert pipeline.now < 20.0 + 2 * 5.0 + 1.0   # the hang limit, then the stall rule


def test_the_window_counts_the_batches_of_bundles_but_keeps_min_items_in_flight():
    pipeline = FakePipeline(rate=1)
    most = 0
    done: list[int] = []

    def send(item: Item) -> None:
        nonlocal most
        pipeline.sent.append(item.seq)
        most = max(most, len([s for s in pipeline.sent if s > pipeline.acked]))

    # Items weigh 3 batches: a window of 4 batches holds one item, min_items keeps three.
    streamer = Streamer(settings(window=4, min_items=3), pipeline, {0: '/m/layer_0'},
                        clock=pipeline.clock, log=lambda _text: None)
    streamer.stream((Item(i) for i in range(9)), send, pipeline.done_through,
                    lambda item: done.append(item.seq), what='training', weight=lambda _i: 3)
    assert done == list(range(9)) and most == 3
    pipeline, done, most = FakePipeline(rate=1), [], 0
    streamer = Streamer(settings(window=4), pipeline, {0: '/m/layer_0'},
                        clock=pipeline.clock, log=lambda _text: None)
    streamer.stream((Item(i) for i in range(6)), send, pipeline.done_through,
                    lambda item: done.append(item.seq), what='training', weight=lambda _i: 2)
    assert done == list(range(6)) and most == 2  # two items of two batches fill four


def test_a_stall_resends_completed_items_the_leaves_no_longer_acknowledge():
    """A restored leaf counts from its checkpoint (#1) and lost replayed #2, #3: resend them."""
    pipeline = FakePipeline(rate=1)

    def restore(p: FakePipeline) -> None:
        p.acked, p.stuck = 1, True  # items 0..3 were completed and handed on by now

    pipeline.script[5] = restore
    original = pipeline.send

    def send(item: Item) -> None:
        original(item)
        if pipeline.stuck and item.seq == 3:
            pipeline.stuck = False  # the lost ones came again

    pipeline.send = send
    logs: list[str] = []
    assert run(pipeline, 8, logs=logs, replay=100) == list(range(8))
    assert pipeline.sent[:8] == list(range(8))
    assert pipeline.sent[8:10] == [2, 3]  # completed, but above the leaf's watermark
    assert sum('no progress' in line for line in logs) == 1


def test_a_replay_goes_out_inside_the_window_lowest_seq_first():
    """
    Replays wait their turn in the window.

    A restored Concat stage keeps at most 16 partly joined batches: a replay of 100 sent
    at once (one input forwarding repeats, the other training them) overran it, dropped
    batches and held the stream for the stall limit.
    """
    pipeline = FakePipeline(rate=1)
    looks: list[int] = []
    bursts: list[int] = []  # items sent between two looks at the pipeline
    original_wait = pipeline.wait

    def wait(timeout_s: float) -> None:
        bursts.append(len(pipeline.sent) - sum(bursts))
        original_wait(timeout_s)

    def check(_what):
        looks.append(1)
        return Resume(0) if len(looks) == 30 else None

    pipeline.wait = wait
    streamer = Streamer(settings(window=4, replay=100), pipeline, {0: '/m/layer_0'},
                        clock=pipeline.clock, log=[].append, health_check=check)
    done: list[int] = []
    streamer.stream((Item(i) for i in range(40)), pipeline.send, pipeline.done_through,
                    lambda item: done.append(item.seq), what='training', stream_id='train_x')
    assert done == list(range(40))  # each item handed on once, in order
    again = pipeline.sent[pipeline.sent.index(max(pipeline.sent[:33])) + 1:]
    assert again[:4] == [1, 2, 3, 4]  # the replay starts at the checkpoint, lowest first
    assert max(bursts) <= 4 and streamer.resends_total > 25
