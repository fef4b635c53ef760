"""The layer's compute thread: in order, resettable, errors reported, idle call."""
from __future__ import annotations

import threading
import time

from dff_lifecycle.nodes.compute_worker import ComputeWorker


def test_items_run_in_order_off_the_caller_thread():
    seen, threads = [], set()
    worker = ComputeWorker('w', lambda item, _g: (seen.append(item),
                                                  threads.add(threading.get_ident())),
                           on_error=lambda exc: None)
    for i in range(50):
        worker.submit(i)
    assert worker.wait_idle(5)
    assert seen == list(range(50)) and threading.get_ident() not in threads
    worker.close()


def test_reset_drops_what_was_queued():
    gate, seen = threading.Event(), []

    def work(item, _generation):
        gate.wait(5)
        seen.append(item)

    worker = ComputeWorker('w', work, on_error=lambda exc: None)
    for i in range(5):
        worker.submit(i)
    time.sleep(0.05)        # item 0 is running, 1..4 are queued
    worker.reset()
    worker.submit('after')
    gate.set()
    assert worker.wait_idle(5)
    assert seen == [0, 'after']
    worker.close()


def test_a_failing_item_is_reported_and_the_thread_goes_on():
    errors, seen = [], []

    def work(item, _generation):
        if item == 1:
            raise RuntimeError('boom')
        seen.append(item)

    worker = ComputeWorker('w', work, on_error=errors.append)
    for i in range(3):
        worker.submit(i)
    assert worker.wait_idle(5)
    assert seen == [0, 2] and [str(e) for e in errors] == ['boom']
    worker.close()


def test_idle_call_follows_a_burst_once():
    idle = []
    worker = ComputeWorker('w', lambda item, _g: None, on_error=lambda exc: None,
                           on_idle=lambda: idle.append(time.monotonic()), idle_s=0.02)
    started = time.monotonic()
    for i in range(10):
        worker.submit(i)
    time.sleep(0.3)
    assert len(idle) == 1 and idle[0] - started >= 0.02
    worker.close()
