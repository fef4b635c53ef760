"""
A compute thread fed by a queue, so receiving never waits for a training step.

Subscription callbacks only reassemble chunks and hand complete tensors over;
the thread trains and publishes. The executor therefore never holds a ready
subscription whose callback group is busy, which is what makes rclpy's
multi-threaded executor spin a core while a step runs. Torch releases the GIL
during its kernels, so receiving the next batch overlaps the current step.
The queue needs no bound of its own: the master keeps at most `window`
batches in flight. No rclpy here.
"""
from __future__ import annotations

import queue
import threading
import time
from typing import Any, Callable, Optional

_STOP = object()


class ComputeWorker:
    """Runs `work(item, generation)` for each submitted item, in order, on one thread."""

    def __init__(self, name: str, work: Callable[[Any, int], None],
                 on_error: Callable[[BaseException], None],
                 on_idle: Callable[[], None] = lambda: None, idle_s: float = 0.05) -> None:
        self._work = work
        self._on_error = on_error
        self._on_idle = on_idle   # once the queue stayed empty for idle_s after some work
        self._idle_s = idle_s
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._generation = 0
        self._idle = threading.Event()
        self._idle.set()
        self._busy_since: Optional[float] = None  # time.monotonic() the current item began
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    @property
    def generation(self) -> int:
        """Items submitted before the last `reset` carry an older generation."""
        return self._generation

    def submit(self, item: Any) -> None:
        self._idle.clear()
        self._queue.put((self._generation, item))

    def reset(self) -> None:
        """Drop what is queued (the worker skips items of older generations)."""
        self._generation += 1

    @property
    def busy_since(self) -> Optional[float]:
        """When the item being worked on began (time.monotonic()); None when idle."""
        return self._busy_since

    def backlog(self) -> int:
        return self._queue.qsize()

    def wait_idle(self, timeout_s: float) -> bool:
        """Return True once everything submitted so far was handled."""
        return self._idle.wait(timeout_s)

    def close(self, timeout_s: float = 5.0) -> None:
        self.reset()
        self._queue.put(_STOP)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout_s)

    def _loop(self) -> None:
        worked = False
        while True:
            try:
                entry = self._queue.get(timeout=self._idle_s if worked else None)
            except queue.Empty:
                worked = False
                self._call(self._on_idle)
                continue
            if entry is _STOP:
                return
            worked = True
            generation, item = entry
            if generation == self._generation:
                self._busy_since = time.monotonic()
                try:
                    self._call(self._work, item, generation)
                finally:
                    self._busy_since = None
            if self._queue.empty():
                self._idle.set()

    def _call(self, function: Callable, *args: Any) -> None:
        try:
            function(*args)
        except BaseException as exc:  # noqa: BLE001 - reported, the thread lives on
            self._on_error(exc)
