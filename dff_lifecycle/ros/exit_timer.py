"""
An exit timer that fires even while the main thread holds the GIL.

A node process's teardown calls into the middleware (`rcl_node_fini`), and a
call that never returns there holds the GIL: no Python thread, timer or signal
handler can run. CI saw this once in a while after a `kill -9` of a peer: a
respawned container, its work saved, stuck 25 s in `destroy_node` until
faulthandler ended it with exit code 1, so its launcher reported a failure.

`ExitTimer` arms a POSIX timer whose notification is `_exit(code)` itself,
called by glibc on a thread of its own (SIGEV_THREAD): no Python runs when it
fires, so the process ends with the code of the work it did. Linux (glibc)
only, as the rest of this project; where the timer cannot be made, `arm`
returns False and the caller keeps its faulthandler fallback.
"""
from __future__ import annotations

import ctypes
import ctypes.util
from typing import Optional

CLOCK_MONOTONIC = 1
SIGEV_THREAD = 2


class _Sigevent(ctypes.Structure):
    """glibc's struct sigevent (64 bytes) with the SIGEV_THREAD members."""

    _fields_ = [('sigev_value', ctypes.c_void_p),       # union sigval: _exit's argument
                ('sigev_signo', ctypes.c_int),
                ('sigev_notify', ctypes.c_int),
                ('sigev_notify_function', ctypes.c_void_p),
                ('sigev_notify_attributes', ctypes.c_void_p),
                ('_pad', ctypes.c_byte * 32)]


class _Timespec(ctypes.Structure):
    _fields_ = [('tv_sec', ctypes.c_long), ('tv_nsec', ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [('it_interval', _Timespec), ('it_value', _Timespec)]


def _libc() -> Optional[ctypes.CDLL]:
    try:
        return ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6', use_errno=True)
    except OSError:
        return None


class ExitTimer:
    """`arm(seconds, code)`: the process ends with `code` then unless `cancel` came first."""

    def __init__(self) -> None:
        self._libc = _libc()
        self._timer: Optional[ctypes.c_void_p] = None

    def arm(self, seconds: float, code: int) -> bool:
        """Start the timer; return False where this platform cannot make one."""
        libc = self._libc
        if libc is None or not hasattr(libc, 'timer_create') or self._timer is not None:
            return False
        event = _Sigevent()
        event.sigev_notify = SIGEV_THREAD
        event.sigev_value = ctypes.c_void_p(int(code) & 0xff)
        event.sigev_notify_function = ctypes.cast(libc._exit, ctypes.c_void_p)
        timer = ctypes.c_void_p()
        if libc.timer_create(CLOCK_MONOTONIC, ctypes.byref(event), ctypes.byref(timer)) != 0:
            return False
        whole = int(seconds)
        when = _Itimerspec(_Timespec(0, 0),
                           _Timespec(whole, max(1, int((seconds - whole) * 1e9))))
        if libc.timer_settime(timer, 0, ctypes.byref(when), None) != 0:
            libc.timer_delete(timer)
            return False
        self._timer = timer
        return True

    def cancel(self) -> None:
        """Disarm and free the timer (nothing when none is armed)."""
        if self._timer is not None and self._libc is not None:
            self._libc.timer_delete(self._timer)
        self._timer = None
