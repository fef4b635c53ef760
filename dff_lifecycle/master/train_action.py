"""
The master's `train` action (`dff_msgs/action/Train` on /dff/train): one goal at a time.

The action's callbacks run on the master's executor thread and stay short:
a goal is accepted only while no other goal is accepted or running (nav2's
servers without preemption do the same), a cancel request of the running goal
is accepted and raises its cancel flag, and an accepted goal is queued for the
main thread, which runs it (`run_goal`, from `MasterCoordinator.serve`) through
the same `DeployedRun` as `command:=run`. The execute callback is a coroutine
that waits for the main thread's result without blocking the executor, so the
pipeline's status and result callbacks keep running during training.

Feedback goes out from the main thread as batches finish: at most every
FEEDBACK_PERIOD_S, and at every epoch end. Feedback is volatile: a reader the
server's writer has not yet matched hears nothing, and discovery is not
symmetric (a client can see the server's feedback writer, pass
`server_is_ready`, and send a goal while the server has yet to learn of the
client's reader; a CI run's client heard no feedback of a whole run). So a goal
starts once every node with a goal client here has its feedback reader known
here (`feedback_readers_known`), or after FEEDBACK_READERS_WAIT_S.

The result carries an error code of `Train.Result` and a one-line message:
INVALID_GOAL for a config or override the config check refused (nothing was
deployed, the server takes the next goal), NO_SERVERS, DEPLOY_FAILED,
TRAINING_FAILED, CANCELED, UNKNOWN.
"""
from __future__ import annotations

import math
import queue
import threading
import time
import traceback
from typing import Callable, Optional

from dff_lifecycle.core.config import ConfigError
from dff_lifecycle.core.data.datasets import DataNotFoundError
from dff_lifecycle.core.data.image_folder import ImageFolderError
from dff_lifecycle.master.configs import RunRequest
from dff_lifecycle.master.parameters import TRAIN_ACTION
from dff_lifecycle.master.run import RunControl, RunFailed, RunOutcome
from dff_lifecycle.master.run_progress import Throttle, TrainingProgress
from dff_lifecycle.master.training import LayerScalars, ProgressHook
from dff_msgs.action import Train
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.action.server import ServerGoalHandle
from rclpy.node import Node
from rclpy.task import Future

Log = Callable[[str], None]
FEEDBACK_PERIOD_S = 0.2      # at most 5 feedback messages a second, plus one per epoch end
FEEDBACK_READERS_WAIT_S = 5.0  # the longest a goal waits for its client's feedback reader
RESULT_GRACE_S = 1.0         # at close: time after the last result for the executor to send it
CODE_OF_STAGE = {'servers': Train.Result.NO_SERVERS, 'deploy': Train.Result.DEPLOY_FAILED,
                 'training': Train.Result.TRAINING_FAILED, 'saving': Train.Result.TRAINING_FAILED,
                 'evaluation': Train.Result.TRAINING_FAILED}
CODE_NAMES = {getattr(Train.Result, name): name for name in
              ('NONE', 'INVALID_GOAL', 'NO_SERVERS', 'DEPLOY_FAILED', 'TRAINING_FAILED',
               'CANCELED', 'UNKNOWN')}


FEEDBACK_TOPIC = f'{TRAIN_ACTION}/_action/feedback'
SEND_GOAL_SERVICE = f'{TRAIN_ACTION}/_action/send_goal'


def feedback_readers_known(node: Node) -> bool:
    """
    Return whether every goal client known here has its feedback reader known too.

    rclpy and rclcpp action clients create both; the counts are of what this
    participant has discovered, so a reader the feedback writer has not matched
    yet is missing from them.
    """
    return node.count_subscribers(FEEDBACK_TOPIC) >= max(1, node.count_clients(SEND_GOAL_SERVICE))


def wait_for(condition: Callable[[], bool], timeout_s: float, stopping: Callable[[], bool],
             clock: Callable[[], float] = time.monotonic,
             sleep: Callable[[float], None] = time.sleep, poll_s: float = 0.05) -> bool:
    """Return whether condition() held before timeout_s (or before stopping() did)."""
    deadline = clock() + timeout_s
    while not condition():
        if stopping() or clock() >= deadline:
            return False
        sleep(poll_s)
    return True


class GoalJob:
    """One accepted goal, handed from the executor thread to the main thread."""

    def __init__(self, handle: ServerGoalHandle) -> None:
        self.handle = handle
        self.goal = handle.request
        self.id = bytes(handle.goal_id.uuid).hex()[:8]
        self.cancel = threading.Event()      # the client asked to cancel
        self.finished: Future = Future()     # the result, set by the main thread
        self.finished_at = 0.0               # when (time.monotonic)
        self.executed = threading.Event()    # the terminal state is set


class TrainActionServer:
    """The action server; `next_goal` and `finish` are for the main thread."""

    def __init__(self, node: Node, log: Log = print) -> None:
        self.node = node
        self.log = log
        self._lock = threading.Lock()
        self._active: Optional[GoalJob] = None
        self._last: Optional[GoalJob] = None  # the last goal finished
        self._executing: dict[bytes, GoalJob] = {}  # by goal id, until the coroutine takes it
        self._closing = False
        self._jobs: queue.Queue[GoalJob] = queue.Queue()
        self._server = ActionServer(node, Train, TRAIN_ACTION, execute_callback=self._execute,
                                    goal_callback=self._on_goal,
                                    handle_accepted_callback=self._on_accepted,
                                    cancel_callback=self._on_cancel)

    # ------------------------------------------------------- executor thread
    def _on_goal(self, goal: Train.Goal) -> GoalResponse:
        with self._lock:
            busy = 'the master is stopping' if self._closing else (
                f'goal {self._active.id} is running (one goal at a time)'
                if self._active is not None else '')
        if busy:
            self.log(f'{TRAIN_ACTION}: goal rejected: {busy}')
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT

    def _on_accepted(self, handle: ServerGoalHandle) -> None:
        # Goal request, acceptance and this run back to back on the one executor thread,
        # so no second goal is accepted between the check above and this.
        job = GoalJob(handle)
        with self._lock:
            self._active = job
            self._executing[bytes(handle.goal_id.uuid)] = job
        goal = job.goal
        self.log(f'{TRAIN_ACTION}: goal {job.id} accepted: model {goal.model_config or "-"}, '
                 f'epochs {goal.epochs or "-"}, seed {goal.seed}, overrides '
                 f'{list(goal.overrides) or "-"}')
        handle.execute()
        self._jobs.put(job)

    def _on_cancel(self, handle: ServerGoalHandle) -> CancelResponse:
        with self._lock:
            job = self._active
        if job is None or job.handle != handle:
            return CancelResponse.REJECT
        self.log(f'{TRAIN_ACTION}: goal {job.id}: cancel requested')
        job.cancel.set()
        return CancelResponse.ACCEPT

    async def _execute(self, handle: ServerGoalHandle) -> Train.Result:
        # By id: the main thread may have finished the goal (an invalid one) before this ran.
        with self._lock:
            job = self._executing.pop(bytes(handle.goal_id.uuid), None)
        if job is None:  # not accepted here (cannot happen): end it
            handle.abort()
            return failure(Train.Result.UNKNOWN, 'goal not known to the server')
        result = await job.finished  # yields to the executor until the main thread is done
        if result.error_code == Train.Result.NONE:
            handle.succeed()
        elif result.error_code == Train.Result.CANCELED and handle.is_cancel_requested:
            handle.canceled()
        else:
            handle.abort()
        job.executed.set()
        return result

    # ----------------------------------------------------------- main thread
    def next_goal(self, timeout_s: float) -> Optional[GoalJob]:
        try:
            return self._jobs.get(timeout=timeout_s)
        except queue.Empty:
            return None

    def wait_for_feedback_readers(self, job: GoalJob, stopping: Callable[[], bool],
                                  timeout_s: float = FEEDBACK_READERS_WAIT_S) -> None:
        """Hold the goal until its client can hear feedback (at most timeout_s)."""
        if not wait_for(lambda: feedback_readers_known(self.node), timeout_s, stopping):
            self.log(f"{TRAIN_ACTION}: goal {job.id}: starting without every client's "
                     f'feedback reader discovered after {timeout_s:g} s: early feedback '
                     'may be lost')

    def finish(self, job: GoalJob, result: Train.Result) -> None:
        """End the goal with `result`; the next goal can be accepted from now on."""
        with self._lock:
            if self._active is job:
                self._active = None
            self._last = job
        if not job.finished.done():
            job.finished_at = time.monotonic()
            job.finished.set_result(result)
        executor = self.node.executor
        if executor is not None:
            executor.wake()  # the execute coroutine resumes on the next turn

    def close(self) -> None:
        """Reject new goals, end a goal still open (an interrupted run), let results go out."""
        with self._lock:
            self._closing = True
            job = self._active
        if job is not None:
            self.finish(job, failure(Train.Result.UNKNOWN,
                                     'the master stopped before the goal finished'))
        last = self._last
        if last is not None:  # its result goes out from the executor thread: give it time
            last.executed.wait(2.0)
            time.sleep(max(0.0, last.finished_at + RESULT_GRACE_S - time.monotonic()))
        self._server.destroy()


# --------------------------------------------------------------------- goals
def goal_request(goal: Train.Goal, defaults: RunRequest) -> RunRequest:
    """Return what the goal asks for; an empty field keeps the master's parameter."""
    return RunRequest(model_config=goal.model_config or defaults.model_config,
                      layer_config=goal.layer_config or defaults.layer_config,
                      epochs=goal.epochs or defaults.epochs,
                      seed=None if goal.seed == -1 else goal.seed,
                      overrides=tuple(goal.overrides))


def feedback_of(progress: TrainingProgress, layers: list[tuple[str, tuple]]) -> Train.Feedback:
    return Train.Feedback(
        epoch=progress.epoch, epochs=progress.epochs, batch=progress.batch,
        batches_per_epoch=progress.batches_per_epoch, layers=[name for name, _ in layers],
        loss=[float(v[0]) for _, v in layers],
        goodness_positive=[float(v[1]) for _, v in layers],
        goodness_negative=[float(v[2]) for _, v in layers],
        elapsed_s=progress.elapsed_s, remaining_s=progress.remaining_s)


def feedback_hook(publish: Callable[[Train.Feedback], None],
                  period_s: float = FEEDBACK_PERIOD_S,
                  clock: Callable[[], float] = time.monotonic) -> ProgressHook:
    """Return a progress hook that publishes at most every period_s, and at each epoch end."""
    throttle = Throttle(period_s, clock)

    def hook(progress: TrainingProgress, layers: LayerScalars) -> None:
        if throttle.ready(force=progress.epoch_end):
            publish(feedback_of(progress, layers()))
    return hook


def failure(code: int, message: str) -> Train.Result:
    return Train.Result(error_code=code, error_msg=message, test_accuracy=math.nan)


def result_of(outcome: RunOutcome, out_dir: str = '', stopping: bool = False) -> Train.Result:
    result = Train.Result(test_accuracy=outcome.test_accuracy,
                          train_seconds=outcome.train_seconds, epochs_done=outcome.epochs_done,
                          weight_files=list(outcome.weight_files), out_dir=out_dir)
    if outcome.canceled:
        result.error_code = Train.Result.CANCELED
        why = 'the master is stopping' if stopping else 'canceled'
        done = outcome.metrics.get('batches_done', 0)
        result.error_msg = (f'{why}: streaming stopped after {done} batch(es), weights saved, '
                            'layers left inactive')
    return result


def run_goal(job: GoalJob, run: Callable[[RunRequest, RunControl], RunOutcome],
             defaults: RunRequest, stopping: Callable[[], bool], log: Log = print,
             out_dir: str = '') -> Train.Result:
    """Run one goal to its result; never raises (but KeyboardInterrupt)."""
    def cancelled() -> bool:
        return job.cancel.is_set() or stopping()

    started = time.perf_counter()
    if cancelled():
        result = failure(Train.Result.CANCELED, 'canceled before it started: nothing deployed')
    else:
        try:
            request = goal_request(job.goal, defaults)
            control = RunControl(cancelled, feedback_hook(job.handle.publish_feedback))
            outcome = run(request, control)
        except (ConfigError, DataNotFoundError, ImageFolderError) as exc:
            result = failure(Train.Result.INVALID_GOAL, str(exc))
        except RunFailed as exc:
            result = failure(CODE_OF_STAGE.get(exc.stage, Train.Result.UNKNOWN), str(exc))
        except Exception as exc:  # noqa: B902 - a bug must not take the server down
            log(traceback.format_exc().rstrip())
            result = failure(Train.Result.UNKNOWN, f'{type(exc).__name__}: {exc}')
        else:
            result = result_of(outcome, out_dir, stopping=stopping() and not job.cancel.is_set())
    code = CODE_NAMES.get(result.error_code, str(result.error_code))
    accuracy = '' if math.isnan(result.test_accuracy) else \
        f', test accuracy {result.test_accuracy:.4f}'
    log(f'{TRAIN_ACTION}: goal {job.id}: {code}{accuracy} after '
        f'{time.perf_counter() - started:.1f} s' + (f': {result.error_msg}'
                                                    if result.error_msg else ''))
    return result
