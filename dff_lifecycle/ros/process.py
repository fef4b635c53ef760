"""
The rclpy process harness, written once.

Init, an executor spun in a background thread, and an orderly shutdown.

The master, the server containers, the command-line tools and the tests all run
their nodes this way: the main thread does the work (blocking service calls,
streaming) while the executor thread runs the callbacks, so nothing ever waits
on a future inside a callback of its own executor. rclpy's own signal handlers
are off: each process decides what SIGINT and SIGTERM mean for it.

`kill -USR1 <pid>` makes any of them print every thread's Python stack to its
stderr (under ros2 launch: the launch output and log) and go on running: the
first thing to ask of a process that seems stuck.
"""
from __future__ import annotations

from contextlib import contextmanager
import faulthandler
import os
import signal
import sys
import threading
from typing import Iterator, NoReturn, Optional, Sequence

from dff_lifecycle.ros.environment import configure_environment
from dff_lifecycle.ros.exit_timer import ExitTimer
from dff_lifecycle.ros.parameters import ParameterError
import rclpy
from rclpy.context import Context
from rclpy.executors import Executor, MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions


STACK_DUMP_SIGNAL = signal.SIGUSR1


def enable_stack_dumps() -> None:
    """STACK_DUMP_SIGNAL prints every thread's stack to stderr; the process goes on."""
    try:
        faulthandler.register(STACK_DUMP_SIGNAL, file=sys.stderr, all_threads=True)
    except (AttributeError, ValueError, OSError, RuntimeError):  # no usable stderr, etc.
        pass


class RosProcess:
    """One initialised rclpy context; `start` spins an executor in a daemon thread."""

    def __init__(self, context: Optional[Context]) -> None:
        self.context = context  # None: rclpy's default context
        self.executor: Optional[Executor] = None
        self._thread: Optional[threading.Thread] = None
        self._nodes: list[Node] = []
        self.result: Optional[int] = None  # the work's exit code, once `done` says it

    def done(self, code: int) -> None:
        """Say the process's work ended with `code`: a teardown that hangs ends with it."""
        self.result = code

    def start(self, *nodes: Node, threads: int = 1) -> Executor:
        """Create the executor (single-threaded for 1), add `nodes` and spin it."""
        if self.executor is not None:
            raise RuntimeError('the executor is already spinning')
        self.executor = (SingleThreadedExecutor(context=self.context) if threads == 1
                         else MultiThreadedExecutor(num_threads=threads, context=self.context))
        for node in nodes:
            self.add(node)
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()
        return self.executor

    def add(self, node: Node) -> Node:
        """Spin `node` too; it is destroyed when the process closes."""
        if self.executor is None:
            raise RuntimeError('start() the executor first')
        self.executor.add_node(node)
        self._nodes.append(node)
        return node

    def close(self, timeout_s: float = 2.0) -> None:
        if self.executor is not None:
            self.executor.shutdown(timeout_sec=timeout_s)
        if self._thread is not None:
            self._thread.join(timeout_s)  # a spin thread alive at exit can abort the process
        for node in reversed(self._nodes):
            node.destroy_node()
        self._nodes.clear()
        if rclpy.ok(context=self.context):
            rclpy.shutdown(context=self.context)


@contextmanager
def ros_process(args: Optional[Sequence[str]] = None, *, own_context: bool = False,
                shutdown_timeout_s: float = 2.0) -> Iterator[RosProcess]:
    """
    Initialise rclpy for the block (with `args`, e.g. sys.argv and its --ros-args).

    own_context: a private context, for tools and tests that share a process.
    """
    configure_environment()
    enable_stack_dumps()
    context = Context() if own_context else None
    try:
        rclpy.init(args=list(args) if args is not None else None, context=context,
                   signal_handler_options=SignalHandlerOptions.NO)
    except RuntimeError as exc:  # rcl's RCLError: e.g. "-p name:=" with no value
        raise ParameterError(f'cannot use the ROS arguments: {rcl_reason(exc)}') from None
    process = RosProcess(context)
    failed = False
    try:
        yield process
    except BaseException:
        failed = True
        raise
    finally:
        # A close that hangs inside the middleware holds the GIL (seen in CI after a
        # peer's kill -9: a container stuck in destroy_node, its layers saved). Every
        # thread's stack is dumped, then the exit timer ends the process with the
        # work's own code; faulthandler's exit (code 1) is the fallback.
        bound = 2 * shutdown_timeout_s + 5
        code = 1 if failed or process.result is None else process.result
        flush_output()  # the timer's _exit flushes nothing
        timer = ExitTimer()
        armed = timer.arm(bound + 1, code)
        faulthandler.dump_traceback_later(bound, exit=not armed)
        try:
            process.close(shutdown_timeout_s)
        finally:
            faulthandler.cancel_dump_traceback_later()
            timer.cancel()


def rcl_reason(exc: BaseException) -> str:
    """Return rcl's message without its C source location ("Couldn't parse ...")."""
    text = str(exc).split(', at /', 1)[0]
    return text.split('failed to initialize rcl: ', 1)[-1].replace('. Error: error not set', '')


def exit_process(code: int) -> NoReturn:
    """
    End a node process at once, once its work is saved and rclpy is shut down.

    Interpreter teardown runs the middleware's exit-time destructors, which have no
    bound; a server process has nothing left to flush but its output.
    """
    flush_output()
    os._exit(code)


def restart_process(extra_ros_args: Sequence[str] = ()) -> NoReturn:
    """
    Replace this process by a fresh run of the same command line, in place (same pid).

    Nothing is shut down: the middleware's participant is simply gone with the old image
    (its descriptors are closed at the exec, so its ports and shared-memory locks are freed),
    and the new image joins the graph as a brand-new participant. `extra_ros_args` are
    appended as a further `--ros-args` section (e.g. the name the old image had claimed).
    """
    flush_output()
    for fd in _open_descriptors():
        if fd > 2:
            try:
                os.set_inheritable(fd, False)
            except OSError:
                pass
    argv = list(sys.orig_argv)
    if extra_ros_args:
        argv += ['--ros-args', *extra_ros_args]
    os.execv(sys.executable, argv)


def _open_descriptors() -> list[int]:
    try:
        return [int(name) for name in os.listdir('/proc/self/fd')]
    except OSError:
        return list(range(3, 1024))


def flush_output() -> None:
    """Flush stdout and stderr, whatever state they are in."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
