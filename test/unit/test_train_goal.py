"""The train action's goal handling without ROS: requests, feedback rate, results, error codes."""
import math
import threading
from types import SimpleNamespace

from dff_lifecycle.core.config import ConfigError
from dff_lifecycle.core.data.datasets import DataNotFoundError
from dff_lifecycle.master.configs import RunRequest
from dff_lifecycle.master.run import RunFailed, RunOutcome, STAGES
from dff_lifecycle.master.run_progress import TrainingProgress
from dff_lifecycle.master.train_action import (CODE_OF_STAGE, feedback_hook,
                                               feedback_readers_known, FEEDBACK_TOPIC,
                                               goal_request, result_of, run_goal,
                                               SEND_GOAL_SERVICE, wait_for)
from dff_msgs.action import Train
from fake_clock import FakeClock
import pytest

DEFAULTS = RunRequest('params/models/mnist_ff.yaml', 'params/layers.yaml', epochs=5)
LAYERS = [('/m/layer_0', (0.5, 2.0, 1.0)), ('/m/layer_1', (0.7, 1.5, 1.2))]


def job(goal=None):
    published = []
    handle = SimpleNamespace(publish_feedback=published.append)
    return SimpleNamespace(goal=goal or Train.Goal(seed=-1), cancel=threading.Event(),
                           handle=handle, id='abcd1234', published=published)


def test_empty_goal_fields_keep_the_masters_parameters():
    request = goal_request(Train.Goal(seed=-1), DEFAULTS)
    assert request == RunRequest(DEFAULTS.model_config, DEFAULTS.layer_config, epochs=5,
                                 seed=None, overrides=())


def test_goal_fields_win():
    goal = Train.Goal(model_config='m.yaml', layer_config='l.yaml', epochs=2, seed=7,
                      overrides=['training.batch_size:=50'])
    assert goal_request(goal, DEFAULTS) == RunRequest('m.yaml', 'l.yaml', 2, 7,
                                                      ('training.batch_size:=50',))


def test_feedback_is_bounded_in_rate_but_every_epoch_end_goes_out():
    clock, sent = FakeClock(0.0), []
    hook = feedback_hook(sent.append, period_s=0.2, clock=clock)
    for done in range(1, 25):           # 3 epochs of 8 batches, 60 ms apart
        clock.now = 0.06 * done
        hook(TrainingProgress(done, 24, 3, clock.now), lambda: LAYERS)
    # The first, then one per 0.2 s, and every epoch end (which restarts the period).
    assert [(f.epoch, f.batch) for f in sent] == [(1, 1), (1, 5), (1, 8), (2, 4), (2, 8),
                                                  (3, 4), (3, 8)]
    last = sent[-1]
    assert (last.epochs, last.batches_per_epoch) == (3, 8)
    assert list(last.layers) == ['/m/layer_0', '/m/layer_1']
    assert list(last.loss) == pytest.approx([0.5, 0.7])
    assert list(last.goodness_positive) == pytest.approx([2.0, 1.5])
    assert list(last.goodness_negative) == pytest.approx([1.0, 1.2])


def test_layer_scalars_are_read_only_for_feedback_that_goes_out():
    clock, reads = FakeClock(0.0), []
    hook = feedback_hook(lambda _f: None, period_s=1.0, clock=clock)
    for done in range(1, 5):
        hook(TrainingProgress(done, 100, 1, 0.0), lambda: reads.append(1) or LAYERS)
    assert len(reads) == 1


def test_a_finished_run_succeeds_with_its_numbers():
    outcome = RunOutcome(metrics={}, test_accuracy=0.9, train_seconds=12.5, epochs_done=2,
                         weight_files=['server_1:/w/m/layer_0.pt'])
    result = result_of(outcome, out_dir='/runs/x')
    assert result.error_code == Train.Result.NONE and result.error_msg == ''
    assert (result.test_accuracy, result.train_seconds, result.epochs_done) == \
        (pytest.approx(0.9), 12.5, 2)
    assert list(result.weight_files) == ['server_1:/w/m/layer_0.pt']
    assert result.out_dir == '/runs/x'


def test_a_canceled_run_says_so():
    outcome = RunOutcome(metrics={'batches_done': 17}, train_seconds=3.0, epochs_done=1,
                         weight_files=['server_1:/w'], canceled=True)
    result = result_of(outcome)
    assert result.error_code == Train.Result.CANCELED
    assert '17' in result.error_msg and math.isnan(result.test_accuracy)
    assert list(result.weight_files) == ['server_1:/w']


def test_every_stage_has_an_error_code():
    assert set(CODE_OF_STAGE) == set(STAGES)


@pytest.mark.parametrize('error, code', [
    (ConfigError('m.yaml', 'training.batch_size', 'must be >= 2'), Train.Result.INVALID_GOAL),
    (DataNotFoundError('no MNIST under /data'), Train.Result.INVALID_GOAL),
    (RunFailed('servers', 'found 1 server container(s)'), Train.Result.NO_SERVERS),
    (RunFailed('deploy', 'configure failed'), Train.Result.DEPLOY_FAILED),
    (RunFailed('training', 'no progress'), Train.Result.TRAINING_FAILED),
    (RunFailed('evaluation', 'no progress'), Train.Result.TRAINING_FAILED),
    (ZeroDivisionError('a bug'), Train.Result.UNKNOWN),
])
def test_failures_become_error_codes_with_their_message(error, code):
    def run(_request, _control):
        raise error
    lines = []
    result = run_goal(job(), run, DEFAULTS, lambda: False, lines.append)
    assert result.error_code == code
    assert str(error) in result.error_msg
    assert math.isnan(result.test_accuracy)


def test_a_goal_canceled_before_it_started_runs_nothing():
    calls = []
    canceled = job()
    canceled.cancel.set()
    result = run_goal(canceled, lambda *a: calls.append(a), DEFAULTS, lambda: False,
                      lambda _t: None)
    assert result.error_code == Train.Result.CANCELED and not calls


def test_the_run_sees_cancel_and_stop_and_publishes_feedback():
    running = job()
    stopping = [False]

    def run(request, control):
        assert request.epochs == 5 and not control.cancelled()
        control.on_progress(TrainingProgress(8, 8, 1, 1.0), lambda: LAYERS)
        stopping[0] = True
        assert control.cancelled()  # a stopping master cancels too
        return RunOutcome(metrics={'batches_done': 8}, canceled=True)

    result = run_goal(running, run, DEFAULTS, lambda: stopping[0], lambda _t: None)
    assert len(running.published) == 1
    assert result.error_code == Train.Result.CANCELED
    assert 'stopping' in result.error_msg


class Graph:
    """What a node has discovered: feedback readers and goal clients by name."""

    def __init__(self, readers: int, clients: int) -> None:
        self.counts = {FEEDBACK_TOPIC: readers, SEND_GOAL_SERVICE: clients}

    def count_subscribers(self, topic: str) -> int:
        return self.counts[topic]

    def count_clients(self, service: str) -> int:
        return self.counts[service]


@pytest.mark.parametrize('readers, clients, known', [
    (0, 0, False),   # nobody listening: no feedback can arrive
    (0, 1, False),   # the goal's client is known, its feedback reader not yet
    (1, 1, True),
    (1, 2, False),   # a second client whose reader is not discovered yet
    (2, 1, True),    # a feedback listener without a goal client (an echo)
])
def test_a_goal_waits_for_every_goal_clients_feedback_reader(readers, clients, known):
    assert feedback_readers_known(Graph(readers, clients)) is known


def test_wait_for_returns_as_soon_as_the_condition_holds():
    clock, seen = FakeClock(0.0), []

    def condition():
        seen.append(clock.now)
        return clock.now >= 0.3
    assert wait_for(condition, 5.0, lambda: False, clock=clock, sleep=clock.sleep, poll_s=0.1)
    assert clock.now == pytest.approx(0.3) and len(seen) == 4


def test_wait_for_gives_up_at_its_timeout_or_when_stopping():
    clock = FakeClock(0.0)
    assert not wait_for(lambda: False, 1.0, lambda: False, clock=clock, sleep=clock.sleep,
                        poll_s=0.25)
    assert clock.now == pytest.approx(1.0)
    clock = FakeClock(0.0)
    assert not wait_for(lambda: False, 60.0, lambda: clock.now >= 0.5, clock=clock,
                        sleep=clock.sleep, poll_s=0.25)
    assert clock.now == pytest.approx(0.5)
