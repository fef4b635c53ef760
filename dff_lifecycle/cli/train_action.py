"""
dff_train_action: train through the master's train action, with a progress bar.

    dff_train_action [--model-config M] [--layer-config L] [--epochs N] [--seed N]
                     [-o dotted.key:=value ...] [--server-timeout S] [--no-progress]

Sends one goal to /dff/train (`dff_msgs/action/Train`), offered by a master started
with `command:=serve` (e.g. `dff_launch mnist_2servers -p master.command:=serve`).
Empty configs, --epochs 0 and no --seed keep the master's parameters and the model
config's values; `-o` overrides model-config keys (`-o training.batch_size:=500`).
The feedback draws a progress bar on stderr (plain lines when stderr is not a
terminal); Ctrl-C cancels the goal and waits for its result (a second Ctrl-C leaves
at once). The result goes to stdout as `key: value` lines.

Exit codes: 0 succeeded, 1 failed or rejected, 2 no action server within
--server-timeout (or a bad argument), 130 canceled or interrupted.
"""
from __future__ import annotations

import argparse
import math
import signal
import sys
import threading
import time
from typing import Any, Callable, Optional, Sequence, TextIO

from dff_lifecycle.cli.arguments import non_negative_int
from dff_lifecycle.common.overrides import OverrideError, parse_override
from dff_lifecycle.master.parameters import TRAIN_ACTION

PROG = 'dff_train_action'
EXIT_OK, EXIT_FAILED, EXIT_NO_SERVER, EXIT_CANCELED = 0, 1, 2, 130
# Without a terminal: a line at an epoch end once the last line is EPOCH_LINE_EVERY_S old
# (the last epoch's always), else one every PLAIN_LINE_EVERY_S.
PLAIN_LINE_EVERY_S = 10.0
EPOCH_LINE_EVERY_S = 1.0
SERVER_GONE_S = 10.0        # the action server out of the graph this long: stop waiting
STATUS_NAMES = {0: 'UNKNOWN', 1: 'ACCEPTED', 2: 'EXECUTING', 3: 'CANCELING', 4: 'SUCCEEDED',
                5: 'CANCELED', 6: 'ABORTED'}  # action_msgs/msg/GoalStatus
SUCCEEDED, CANCELED = 4, 5
ERROR_NAMES = {0: 'NONE', 1: 'INVALID_GOAL', 2: 'NO_SERVERS', 3: 'DEPLOY_FAILED',
               4: 'TRAINING_FAILED', 5: 'CANCELED', 99: 'UNKNOWN'}  # Train.Result's constants


def override(text: str) -> str:
    try:
        parse_override(text)
    except OverrideError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.strip().splitlines()[0])
    parser.add_argument('--model-config', default='',
                        help="model YAML as the master's machine sees it (default: the "
                             "master's model_config)")
    parser.add_argument('--layer-config', default='',
                        help="layer YAML (default: the master's layer_config)")
    parser.add_argument('--epochs', type=non_negative_int, default=0,
                        help="epochs (default 0: the master's epochs, else the config's)")
    parser.add_argument('--seed', type=non_negative_int, default=None,
                        help="training.seed (default: the config's)")
    parser.add_argument('-o', '--override', dest='overrides', action='append', default=[],
                        type=override, metavar='KEY:=VALUE',
                        help='model-config override, e.g. training.batch_size:=500 (repeatable)')
    parser.add_argument('--server-timeout', type=float, default=10.0, metavar='S',
                        help=f'wait this long for {TRAIN_ACTION} (default 10)')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar or lines')
    return parser


# ------------------------------------------------------------------- pure parts
def exit_code(status: int) -> int:
    """Return the exit code for a goal's final action_msgs/GoalStatus value."""
    return {SUCCEEDED: EXIT_OK, CANCELED: EXIT_CANCELED}.get(status, EXIT_FAILED)


def error_name(code: int) -> str:
    return ERROR_NAMES.get(code, str(code))


def result_lines(status: int, result: Any) -> list[str]:
    """Return the result as `key: value` lines (a dff_msgs Train.Result or alike)."""
    lines = [f'status: {STATUS_NAMES.get(status, str(status))}']
    error = error_name(result.error_code)
    lines.append(f'error: {error}' + (f': {result.error_msg}' if result.error_msg else ''))
    accuracy = result.test_accuracy
    lines.append('test accuracy: ' + ('-' if math.isnan(accuracy) else f'{accuracy:.4f}'))
    lines.append(f'train seconds: {result.train_seconds:.1f}')
    lines.append(f'epochs done: {result.epochs_done}')
    lines += [f'weight file: {f}' for f in result.weight_files]
    if result.out_dir:
        lines.append(f'out dir: {result.out_dir}')
    return lines


def clock_text(seconds: float) -> str:
    """Return `m:ss` (`h:mm:ss` from an hour), `?` for a negative (unknown) time."""
    if seconds < 0 or math.isnan(seconds):
        return '?'
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f'{hours}:{minutes:02d}:{secs:02d}' if hours else f'{minutes}:{secs:02d}'


def losses_text(feedback: Any) -> str:
    return ' '.join(f'{v:.3f}' for v in feedback.loss) or '-'


def feedback_line(feedback: Any) -> str:
    """Return one plain progress line of a Train.Feedback."""
    return (f'epoch {feedback.epoch}/{feedback.epochs}  batch {feedback.batch}/'
            f'{feedback.batches_per_epoch}  loss {losses_text(feedback)}  elapsed '
            f'{clock_text(feedback.elapsed_s)}  remaining {clock_text(feedback.remaining_s)}')


def batches_done(feedback: Any) -> int:
    return (feedback.epoch - 1) * feedback.batches_per_epoch + feedback.batch


class ProgressView:
    """Shows feedback: a tqdm bar on a terminal, else plain lines; fed from any thread."""

    def __init__(self, stream: TextIO, enabled: bool = True, tty: Optional[bool] = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream
        self.enabled = enabled
        self.tty = stream.isatty() if tty is None else tty
        self.clock = clock
        self.received = 0
        self._bar = None
        self._last_line: Optional[float] = None
        self._lock = threading.Lock()

    def on_feedback(self, message: Any) -> None:
        """Take a FeedbackMessage (its `feedback`) or a Train.Feedback."""
        feedback = getattr(message, 'feedback', message)
        with self._lock:
            self.received += 1
            if not self.enabled:
                return
            if self.tty:
                self._draw(feedback)
            else:
                self._line(feedback)

    def _draw(self, feedback: Any) -> None:
        from tqdm import tqdm
        total = feedback.epochs * feedback.batches_per_epoch
        if self._bar is None:
            self._bar = tqdm(total=total, unit='batch', desc='train', file=self.stream,
                             bar_format='{desc}: {percentage:3.0f}%|{bar}| {n}/{total} '
                                        '[{postfix}]')
        done = batches_done(feedback)
        self._bar.total = total
        self._bar.update(max(0, done - self._bar.n))
        self._bar.set_postfix_str(f'epoch {feedback.epoch}/{feedback.epochs}, loss '
                                  f'{losses_text(feedback)}, {clock_text(feedback.elapsed_s)}'
                                  f'<{clock_text(feedback.remaining_s)}')

    def _line(self, feedback: Any) -> None:
        # The first message, epoch ends (see EPOCH_LINE_EVERY_S), else every PLAIN_LINE_EVERY_S.
        now = self.clock()
        since = math.inf if self._last_line is None else now - self._last_line
        epoch_end = feedback.batch >= feedback.batches_per_epoch
        last = epoch_end and feedback.epoch >= feedback.epochs
        if not (since >= PLAIN_LINE_EVERY_S or last
                or (epoch_end and since >= EPOCH_LINE_EVERY_S)):
            return
        self._last_line = now
        print(feedback_line(feedback), file=self.stream, flush=True)

    def say(self, text: str) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.write(text, file=self.stream)
            else:
                print(text, file=self.stream, flush=True)

    def close(self) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.close()
                self._bar = None


# ------------------------------------------------------------------- ROS parts
class Interrupts:
    """Counts SIGINT / SIGTERM; the handler only counts (the main thread may be anywhere)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, _signum: int, _frame) -> None:
        self.count += 1


def wait_until(condition: Callable[[], bool], timeout_s: float, interrupts: Interrupts,
               step_s: float = 0.05) -> bool:
    """Return True once condition() holds, False after timeout_s or on an interrupt."""
    deadline = time.monotonic() + timeout_s
    seen = interrupts.count
    while not condition():
        if time.monotonic() >= deadline or interrupts.count > seen:
            return False
        time.sleep(step_s)
    return True


def error(text: str) -> None:
    print(f'{PROG}: error: {text}', file=sys.stderr, flush=True)


def send_goal(args: argparse.Namespace, interrupts: Interrupts) -> int:
    from dff_lifecycle.cli.tool_node import tool_node
    from dff_msgs.action import Train
    from rclpy.action import ActionClient

    goal = Train.Goal(model_config=args.model_config, layer_config=args.layer_config,
                      epochs=args.epochs, seed=-1 if args.seed is None else args.seed,
                      overrides=list(args.overrides))
    view = ProgressView(sys.stderr, enabled=not args.no_progress)
    with tool_node('dff_train_action') as node:
        client = ActionClient(node, Train, TRAIN_ACTION)
        if not wait_until(client.server_is_ready, args.server_timeout, interrupts):
            if interrupts.count:
                return EXIT_CANCELED
            error(f'no {TRAIN_ACTION} action server after {args.server_timeout:g} s (start '
                  'the master with -p command:=serve, in the same ROS domain)')
            return EXIT_NO_SERVER
        sent = client.send_goal_async(goal, feedback_callback=view.on_feedback)
        if not wait_until(sent.done, args.server_timeout, interrupts):
            error('interrupted before the goal was accepted' if interrupts.count else
                  f'no answer to the goal within {args.server_timeout:g} s')
            return EXIT_CANCELED if interrupts.count else EXIT_FAILED
        handle = sent.result()
        if not handle.accepted:
            error('goal rejected: the master runs another goal or is stopping (its log '
                  'says which)')
            return EXIT_FAILED
        view.say(f'{PROG}: goal accepted by {TRAIN_ACTION}; Ctrl-C cancels it')
        result = handle.get_result_async()
        canceling, gone_since = False, None
        while not result.done():
            time.sleep(0.05)
            if interrupts.count >= 2:
                view.close()
                error('interrupted again: not waiting for the result')
                return EXIT_CANCELED
            if interrupts.count == 1 and not canceling:
                canceling = True
                view.say(f'{PROG}: canceling the goal, waiting for its result '
                         '(Ctrl-C again leaves at once)')
                handle.cancel_goal_async()
            if client.server_is_ready():
                gone_since = None
            elif gone_since is None:
                gone_since = time.monotonic()
            elif time.monotonic() - gone_since > SERVER_GONE_S:
                view.close()
                error(f'{TRAIN_ACTION} went away before the result')
                return EXIT_FAILED
        view.close()
        response = result.result()
    for line in result_lines(response.status, response.result):
        print(line, flush=True)
    return exit_code(response.status)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    interrupts = Interrupts()
    previous = {sig: signal.signal(sig, interrupts) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return send_goal(args, interrupts)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == '__main__':
    sys.exit(main())
