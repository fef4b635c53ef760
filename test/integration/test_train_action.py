"""The master's train action (/dff/train) and its client, across real processes.

One deployment for the module, started as an operator would: `dff_launch` with
`-p master.command:=serve` (two server containers, then the master). Goals come
from an rclpy ActionClient in this process and from `dff_train_action`; the last
test stops the launcher and checks that the serving master and then the servers
stop cleanly.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

from action_msgs.srv import CancelGoal
from dff_lifecycle.master.parameters import TRAIN_ACTION
from dff_lifecycle.testing.waiting import wait_until
from dff_msgs.action import Train
from dff_processes import Proc, REPO
import pytest
from rclpy.action import ActionClient
from ros_client import ros_client
from ros_env import allocate_domain_id, isolated_ros_env, release_domain_id
import scenarios

pytestmark = pytest.mark.integration

SMALL = str(REPO / 'test' / 'fixtures' / 'mnist_small.yaml')
# mnist_small cut to 4000 images (2 epochs of 80 batches of 50) at a higher learning rate:
# 0.552 in one process and the same here; a distributed run that learns clears the floor.
SMALL_GOAL = {'model_config': SMALL, 'epochs': 2, 'seed': 0,
              'overrides': ['training.train_limit:=4000', 'layer_defaults.lr:=0.1']}
ACCURACY_FLOOR = 0.45
TINY_LAYERS = list(scenarios.TINY_LAYERS)
LONG_EPOCHS = 300           # mnist_tiny: 2400 batches, far longer than any test waits
SUCCEEDED, CANCELED, ABORTED = 4, 5, 6  # action_msgs/GoalStatus


@pytest.fixture(scope='module')
def deployment(tmp_path_factory):
    """dff_launch serving the train action: (environment, launcher, deployment file)."""
    domain = allocate_domain_id()
    env = isolated_ros_env(domain)
    folder = tmp_path_factory.mktemp('serve')
    # load_weights:=false: every goal starts from the seeded initialisation, in any order.
    path = scenarios.write_deployment(folder, command='serve', load_weights=False)
    launcher = scenarios.start_launcher(env, path)
    try:
        launcher.wait_for(f'[master] serving {TRAIN_ACTION}', 120)
        yield env, launcher, path
    finally:
        scenarios.stop_launcher(launcher, path)
        release_domain_id(domain)


@pytest.fixture(scope='module')
def action(deployment):
    """Yield an ActionClient for /dff/train in this process (`.client`, `.ros`), warmed up.

    One client for the module, and one invalid goal through it first: a new participant's
    feedback reader can be matched seconds after its goal service on a starved machine (the
    server waits at most FEEDBACK_READERS_WAIT_S for it), and these tests check the feedback
    of goals as short as 3 s. A new client's first goal is the CLI tests' case.
    """
    with pytest.MonkeyPatch.context() as patch:
        for name, value in deployment[0].items():  # the deployment's domain, for this process
            if os.environ.get(name) != value:
                patch.setenv(name, value)
        with ros_client('train_action_test') as ros:
            client = ActionClient(ros.node, Train, TRAIN_ACTION)
            ros.wait_until(client.server_is_ready, 30, f'{TRAIN_ACTION} to be discovered')
            status, result = Goal(client, model_config='/no/such/model.yaml').result(30)
            assert result.error_code == Train.Result.INVALID_GOAL, (status, result.error_msg)
            yield SimpleNamespace(client=client, ros=ros)


def wait_done(future, timeout_s: float, what: str):
    wait_until(future.done, timeout_s, what)
    return future.result()


class Goal:
    """One goal sent: its handle, the feedback received, its final status and result."""

    def __init__(self, client: ActionClient, **fields) -> None:
        self.feedback: list = []
        fields.setdefault('seed', -1)
        sent = client.send_goal_async(Train.Goal(**fields),
                                      feedback_callback=lambda m: self.feedback.append(
                                          m.feedback))
        self.handle = wait_done(sent, 30, 'the goal response')

    def result(self, timeout_s: float = 120.0):
        response = wait_done(self.handle.get_result_async(), timeout_s, 'the result')
        return response.status, response.result


def cancel_every_goal(ros) -> None:
    """Cancel the server's goals (a zero goal id and stamp): a killed client's goal runs on."""
    cancel = ros.node.create_client(CancelGoal, f'{TRAIN_ACTION}/_action/cancel_goal')
    try:
        ros.wait_until(cancel.service_is_ready, 30, 'the cancel service')
        wait_done(cancel.call_async(CancelGoal.Request()), 30, 'the cancel response')
    finally:
        ros.node.destroy_client(cancel)


def done_count(feedback) -> int:
    return (feedback.epoch - 1) * feedback.batches_per_epoch + feedback.batch


def existing_files(result) -> list[str]:
    """Return the result's weight files ("<server>:<path>") that exist on this disk."""
    return [f for f in result.weight_files if Path(f.split(':', 1)[1]).is_file()]


def test_a_goal_trains_with_feedback_and_returns_accuracy_and_weights(deployment, action):
    goal = Goal(action.client, **SMALL_GOAL)
    assert goal.handle.accepted
    status, result = goal.result()
    assert (status, result.error_code) == (SUCCEEDED, Train.Result.NONE), result.error_msg
    assert result.test_accuracy >= ACCURACY_FLOOR
    assert result.epochs_done == 2 and result.train_seconds > 0
    assert len(result.weight_files) == 2 and existing_files(result) == list(result.weight_files)
    assert {f.split(':')[0] for f in result.weight_files} == {'server_1', 'server_2'}

    # Feedback and result travel apart: the last feedback may come just after the result.
    # rclpy's ActionClient drops feedback that its executor takes after the result, and one
    # CI run of nine missed the run's last one: wait for it, but only require epoch 1's end.
    try:
        action.ros.wait_until(lambda: goal.feedback and done_count(goal.feedback[-1]) == 160,
                              10, 'the feedback of the last batch')
    except AssertionError:
        pass
    feedback = list(goal.feedback)
    counts = [done_count(f) for f in feedback]
    # Known gap: on a loaded machine the client has received as few as 2 of the feedback
    # messages of a 3 s training run (the cause, server or rclpy client, is open), so only
    # the order and content of what arrived is checked.
    master_said = [line for line in deployment[1].lines if 'feedback' in line]
    assert feedback and counts == sorted(counts), (counts, master_said)
    last = feedback[-1]
    assert (last.epochs, last.batches_per_epoch) == (2, 80)
    assert last.remaining_s == 0.0 or done_count(last) < 160
    assert list(last.layers) == ['/mnist_small/layer_0', '/mnist_small/layer_1']
    assert all(len(f.loss) == len(f.goodness_positive) == len(f.goodness_negative) == 2
               for f in feedback)
    # A layer that has reported no batch yet is NaN (CI: the client's last feedback was an
    # early one, layer_1 not yet heard); the run's final feedback has every layer's figures.
    if last.remaining_s == 0.0 and done_count(last) == 160:
        assert all(math.isfinite(v) for v in (*last.loss, *last.goodness_positive,
                                              *last.goodness_negative))
    # At most 5 a second, plus the epoch ends (and one for the first batch).
    assert len(feedback) <= 5 * last.elapsed_s + 2 + 1


def test_cancel_saves_weights_leaves_layers_inactive_and_a_next_goal_trains(action):
    goal = Goal(action.client, epochs=LONG_EPOCHS)
    assert goal.handle.accepted
    action.ros.wait_until(lambda: any(f.epoch >= 2 for f in goal.feedback), 60,
                          'two epochs of feedback')
    # One goal at a time: a second one while this runs is rejected.
    assert not Goal(action.client, epochs=1).handle.accepted

    asked = time.monotonic()
    wait_done(goal.handle.cancel_goal_async(), 30, 'the cancel response')
    status, result = goal.result(60)
    stopped_in = time.monotonic() - asked
    assert (status, result.error_code) == (CANCELED, Train.Result.CANCELED), result.error_msg
    assert stopped_in < 20, stopped_in  # the window drains; nothing like the 2400 batches
    assert 1 <= result.epochs_done < LONG_EPOCHS and result.train_seconds > 0
    assert math.isnan(result.test_accuracy)
    assert len(result.weight_files) == 2 and existing_files(result) == list(result.weight_files)
    states = [action.ros.lifecycle.get_state(node)[1] for node in TINY_LAYERS]
    assert states == ['inactive', 'inactive']  # configured: deactivated, not cleaned up

    again = Goal(action.client, epochs=1)  # the stale layers are replaced by new ones
    assert again.handle.accepted
    status, result = again.result()
    assert (status, result.error_code) == (SUCCEEDED, Train.Result.NONE), result.error_msg
    assert result.epochs_done == 1


INVALID_GOALS = [
    {'overrides': ['training.batch_size:=0']},      # refused by the config check
    {'overrides': ['training.no_such_key:=1']},     # unknown key
    {'overrides': ['training.epochs']},             # not key:=value
    {'model_config': '/no/such/model.yaml'},
]


def test_invalid_goals_are_refused_and_the_server_takes_the_next(action):
    for fields in INVALID_GOALS:
        goal = Goal(action.client, epochs=1, **fields)
        assert goal.handle.accepted
        status, result = goal.result(30)
        assert (status, result.error_code) == (ABORTED, Train.Result.INVALID_GOAL), fields
        assert result.error_msg and '\n' not in result.error_msg
        assert not result.weight_files and not goal.feedback
    assert Goal(action.client, epochs=1).result()[0] == SUCCEEDED


def client_command(*args: str) -> list[str]:
    # The module, not the console script: a checkout whose venv predates the script works too.
    return [sys.executable, '-m', 'dff_lifecycle.cli.train_action', *args]


def test_the_client_cli_trains_and_ctrl_c_cancels(deployment, action):
    env = deployment[0]
    done = subprocess.run(client_command('--epochs', '1'), env=env, capture_output=True,
                          text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[:2] == ['status: SUCCEEDED', 'error: NONE'], done.stdout
    assert sum(line.startswith('weight file: server_') for line in lines) == 2
    # (Its feedback may all be gone before a client this new is matched: the long goal's is not.)

    long = Proc('dff_train_action', client_command('--epochs', str(LONG_EPOCHS)), env)
    try:
        long.wait_for(f'/{LONG_EPOCHS}  batch', 60)  # any epoch: early feedback can drop
        os.killpg(long.popen.pid, signal.SIGINT)  # Ctrl-C
        assert long.wait(60) == 130, long.output
    finally:
        if long.popen.poll() is None:  # failed before the client ended: free the server
            long.kill()
            cancel_every_goal(action.ros)
    assert 'status: CANCELED' in long.lines, long.output
    assert 'error: CANCELED' in '\n'.join(long.lines)


def test_the_client_without_a_server_says_so_and_exits_2():
    env = isolated_ros_env()  # a domain of its own: nobody serves there
    started = time.monotonic()
    result = subprocess.run(client_command('--server-timeout', '1'), env=env,
                            capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.count('\n') == 1 and TRAIN_ACTION in result.stderr
    assert result.stdout == ''
    assert time.monotonic() - started < 30


def test_ctrl_c_stops_the_serving_master_then_the_servers(deployment):
    env, launcher, path = deployment
    # A goal is running: the master cancels it (weights saved) and answers before it goes.
    client = Proc('dff_train_action', client_command('--epochs', str(LONG_EPOCHS)), env)
    try:
        # Any epoch's feedback: rclpy can drop the first ones (see the test above).
        client.wait_for(f'/{LONG_EPOCHS}  batch', 60)
        os.killpg(launcher.popen.pid, signal.SIGINT)
        assert launcher.wait(90) == 0, launcher.output
        assert client.wait(30) == 1, client.output  # aborted by the server, not canceled
    finally:
        client.kill()
    assert 'status: ABORTED' in client.lines, client.output
    assert any(line.startswith('error: CANCELED: the master is stopping')
               for line in client.lines), client.output
    assert sum(line.startswith('weight file: server_') for line in client.lines) == 2
    lines = launcher.output.splitlines()

    def index(text: str) -> int:
        return next(i for i, line in enumerate(lines) if text in line)

    assert (index('[dff_launch] master: sending SIGINT')
            < index(f'[master] stopped serving {TRAIN_ACTION}')
            < index('[dff_launch] master: finished cleanly')
            < index('[dff_launch] server_2: sending SIGINT')), launcher.output
    assert 'SIGTERM' not in launcher.output and 'problems' not in launcher.output
    assert not scenarios.running_children(launcher, path)
