"""
Blocking service calls with timeouts, for code that runs outside the executor.

The master and the CLIs spin their node in a background executor thread and
call services from the main thread; waiting on a future from inside a callback
of the same executor would deadlock, so nothing here is used in callbacks.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Optional

from rclpy.client import Client
from rclpy.node import Node


class ServiceCallError(RuntimeError):
    """A service was unavailable, timed out or failed."""


class ServiceTimeout(ServiceCallError):
    """A service took no answer within its timeout."""


class ServiceUnavailable(ServiceCallError):
    """No server of the service was discovered in time (nothing was sent)."""


# rclpy's Client.wait_for_service looks every 0.25 s (rclpy issue #58): a just-created
# layer's services then cost up to a quarter second per call in bring-up.
POLL_S = 0.005


def wait_for_service(client: Client, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not client.service_is_ready():
        if time.monotonic() >= deadline or not client.context.ok():
            raise ServiceUnavailable(f'service {client.srv_name} not available after '
                                     f'{timeout_s:.1f} s')
        time.sleep(POLL_S)


#: A query unanswered this long is asked again (`call(..., resend_s=RESEND_S)`): a server
#: whose response writer has not yet discovered a brand-new client sends its answer to
#: nobody (rmw_fastrtps waits only briefly for that match), and on a loaded machine the
#: client then waited out its whole timeout (CI: `dff_lifecycle set` got no answer in 15 s).
RESEND_S = 2.0


def call(client: Client, request: Any, timeout_s: float,
         resend_s: Optional[float] = None) -> Any:
    """
    Call a service and wait for its response, or raise ServiceCallError.

    With `resend_s` the request is sent again each time that long passes without an
    answer, until `timeout_s`; the first answer to any of them is returned. Only for
    requests that may be served twice (queries), never for a state change.
    """
    wait_for_service(client, timeout_s)
    done = threading.Event()
    futures = []
    deadline = time.monotonic() + timeout_s
    while True:
        future = client.call_async(request)
        future.add_done_callback(lambda _f: done.set())
        futures.append(future)
        left = deadline - time.monotonic()
        if done.wait(max(0.0, min(left, resend_s or left))):
            break
        if time.monotonic() >= deadline:
            for pending in futures:
                pending.cancel()
            raise ServiceTimeout(f'{client.srv_name}: no response within {timeout_s:.1f} s')
    answered = next(f for f in futures if f.done())
    for pending in futures:
        if pending is not answered:
            pending.cancel()
    exc = answered.exception()
    if exc is not None:
        raise ServiceCallError(f'{client.srv_name}: {exc}') from exc
    return answered.result()


class ClientCache:
    """Create each (type, name) service client once per node."""

    def __init__(self, node: Node) -> None:
        self._node = node
        self._clients: dict[tuple[type, str], Client] = {}
        self._lock = threading.Lock()

    def get(self, srv_type: type, name: str) -> Client:
        with self._lock:
            key = (srv_type, name)
            if key not in self._clients:
                self._clients[key] = self._node.create_client(srv_type, name)
            return self._clients[key]

    def destroy(self) -> None:
        with self._lock:
            for client in self._clients.values():
                self._node.destroy_client(client)
            self._clients.clear()
