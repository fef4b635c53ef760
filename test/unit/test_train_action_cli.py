"""dff_train_action without ROS: arguments, result lines, exit codes, progress lines."""
import io
import math
from types import SimpleNamespace

from dff_lifecycle.cli.train_action import (build_parser, clock_text, ERROR_NAMES, exit_code,
                                            feedback_line, ProgressView, result_lines)
from dff_msgs.action import Train
from fake_clock import FakeClock
import pytest


def feedback(epoch=1, batch=1, epochs=2, per_epoch=8, loss=(0.5, 0.75), remaining=-1.0):
    return Train.Feedback(epoch=epoch, epochs=epochs, batch=batch,
                          batches_per_epoch=per_epoch, layers=['/m/layer_0', '/m/layer_1'],
                          loss=list(loss), goodness_positive=[2.0, 2.0],
                          goodness_negative=[1.0, 1.0], elapsed_s=65.0, remaining_s=remaining)


def test_arguments_make_the_goal_fields():
    args = build_parser().parse_args(['--model-config', 'm.yaml', '--epochs', '2', '--seed', '3',
                                      '-o', 'training.batch_size:=50', '-o', 'head:='])
    assert (args.model_config, args.layer_config, args.epochs, args.seed) == \
        ('m.yaml', '', 2, 3)
    assert args.overrides == ['training.batch_size:=50', 'head:=']
    defaults = build_parser().parse_args([])
    assert (defaults.epochs, defaults.seed, defaults.overrides) == (0, None, [])


@pytest.mark.parametrize('argv', [['-o', 'training.batch_size'], ['--epochs', '-1'],
                                  ['--seed', '-2']])
def test_bad_arguments_exit_2_with_a_message(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(argv)
    assert exit_.value.code == 2
    assert 'dff_train_action: error:' in capsys.readouterr().err


def test_error_names_are_the_actions_constants():
    assert ERROR_NAMES == {getattr(Train.Result, n): n for n in ERROR_NAMES.values()}


@pytest.mark.parametrize('status, code', [(4, 0), (5, 130), (6, 1), (0, 1)])
def test_exit_codes_follow_the_goal_status(status, code):
    assert exit_code(status) == code


def test_result_lines_of_a_success():
    result = Train.Result(test_accuracy=0.91234, train_seconds=12.34, epochs_done=2,
                          weight_files=['server_1:/w/a.pt', 'server_2:/w/b.pt'], out_dir='/r')
    assert result_lines(4, result) == [
        'status: SUCCEEDED', 'error: NONE', 'test accuracy: 0.9123', 'train seconds: 12.3',
        'epochs done: 2', 'weight file: server_1:/w/a.pt', 'weight file: server_2:/w/b.pt',
        'out dir: /r']


def test_result_lines_of_a_failure_name_the_code_and_message():
    result = Train.Result(error_code=Train.Result.INVALID_GOAL, error_msg='m.yaml: bad',
                          test_accuracy=math.nan)
    lines = result_lines(6, result)
    assert lines[:3] == ['status: ABORTED', 'error: INVALID_GOAL: m.yaml: bad',
                         'test accuracy: -']


@pytest.mark.parametrize('seconds, text', [(-1.0, '?'), (math.nan, '?'), (0.4, '0:00'),
                                           (65.0, '1:05'), (3725.0, '1:02:05')])
def test_clock_text(seconds, text):
    assert clock_text(seconds) == text


def test_feedback_line():
    assert feedback_line(feedback(remaining=30.0)) == \
        'epoch 1/2  batch 1/8  loss 0.500 0.750  elapsed 1:05  remaining 0:30'


def test_plain_lines_are_few_without_a_terminal():
    out, clock = io.StringIO(), FakeClock(0.0)
    view = ProgressView(out, tty=False, clock=clock)
    for epoch in (1, 2):
        for batch in range(1, 9):
            clock.now += 0.1
            view.on_feedback(SimpleNamespace(feedback=feedback(epoch, batch)))
    lines = out.getvalue().splitlines()
    # The first message, epoch 1's end came within 1 s of it, the last epoch's end always.
    assert [line.split('  loss')[0] for line in lines] == ['epoch 1/2  batch 1/8',
                                                           'epoch 2/2  batch 8/8']
    assert view.received == 16


def test_no_progress_prints_nothing():
    out = io.StringIO()
    view = ProgressView(out, enabled=False, tty=False)
    view.on_feedback(feedback())
    assert out.getvalue() == '' and view.received == 1


def test_a_terminal_gets_a_bar_that_follows_the_batches():
    out = io.StringIO()
    view = ProgressView(out, tty=True)
    view.on_feedback(feedback(1, 4))
    view.on_feedback(feedback(2, 2, remaining=5.0))
    assert view._bar.n == 10 and view._bar.total == 16
    view.say('a note')
    view.close()
    text = out.getvalue()
    assert '10/16' in text and 'epoch 2/2' in text and 'a note' in text
