"""
The tests' one way to wait: for something observable, with a bound, on an injectable clock.

    wait_until(lambda: path.exists(), 60, 'the first checkpoint of layer_1')

Poll `condition` until it is true; past `timeout_s` raise AssertionError naming `what`
(and `detail()`, e.g. a process's output, so the failure shows what was going on). Unit
tests pass a fake clock and its sleep, so a wait costs no wall time there.
"""
from __future__ import annotations

import time
from typing import Callable


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str, *,
               poll_s: float = 0.05, detail: Callable[[], str] = lambda: '',
               clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep) -> None:
    deadline = clock() + timeout_s
    while not condition():
        if clock() > deadline:
            more = detail()
            raise AssertionError(f'timed out after {timeout_s:g} s waiting for {what}'
                                 + (f'\n{more}' if more else ''))
        sleep(poll_s)
