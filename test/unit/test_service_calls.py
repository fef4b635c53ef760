"""Service calls: a query left unanswered is asked again; a state change never is."""
from __future__ import annotations

import threading

from dff_lifecycle.cli.lifecycle import changed
from dff_lifecycle.ros.lifecycle_client import TransitionInfo
from dff_lifecycle.ros.service_calls import call, ServiceCallError, ServiceUnavailable
from lifecycle_msgs.msg import State
import pytest
from rclpy.task import Future


class FakeClient:
    """A service client whose server answers the requests named in `answers`, on time."""

    srv_name = '/layer/get_state'

    def __init__(self, answers: dict[int, object], delay_s: float = 0.0) -> None:
        self.answers, self.delay_s = answers, delay_s
        self.sent: list[Future] = []
        self.context = self

    def ok(self) -> bool:
        return True

    def service_is_ready(self) -> bool:
        return True

    def call_async(self, _request) -> Future:
        future = Future()
        index = len(self.sent)
        self.sent.append(future)
        if index in self.answers:
            threading.Timer(self.delay_s, future.set_result, [self.answers[index]]).start()
        return future


def test_a_query_whose_answer_was_lost_is_asked_again_and_the_next_answer_returned():
    client = FakeClient({1: 'inactive'})  # the first answer went to nobody
    assert call(client, object(), timeout_s=5.0, resend_s=0.05) == 'inactive'
    assert len(client.sent) == 2
    assert client.sent[0].cancelled()  # the unanswered one is given up


def test_the_first_answer_of_any_request_wins():
    client = FakeClient({0: 'first', 1: 'second'}, delay_s=0.15)
    assert call(client, object(), timeout_s=5.0, resend_s=0.1) == 'first'


def test_without_resend_one_request_is_sent_and_silence_is_an_error():
    client = FakeClient({})
    with pytest.raises(ServiceCallError, match='no response within 0.2 s'):
        call(client, object(), timeout_s=0.2)
    assert len(client.sent) == 1


def test_resends_stop_at_the_timeout():
    client = FakeClient({})
    with pytest.raises(ServiceCallError, match='no response within 0.3 s'):
        call(client, object(), timeout_s=0.3, resend_s=0.1)
    assert 3 <= len(client.sent) <= 4
    assert all(f.cancelled() for f in client.sent)


class FakeLifecycle:
    """change_state that loses its answer (or finds no server); get_state that says `state`."""

    def __init__(self, error: ServiceCallError, state: int) -> None:
        self.error, self.state, self.changes = error, state, 0

    def change_state(self, _name, _transition) -> bool:
        self.changes += 1
        raise self.error

    def get_state(self, _name) -> tuple[int, str]:
        return self.state, 'some state'


ACTIVATE = TransitionInfo(3, 'activate', 'inactive', 'activating')


def test_a_state_change_whose_answer_was_lost_counts_when_the_node_reached_its_goal():
    client = FakeLifecycle(ServiceCallError('no response within 15.0 s'),
                           State.PRIMARY_STATE_ACTIVE)
    assert changed(client, '/m/layer_0', ACTIVATE) is True
    assert client.changes == 1  # never sent twice


@pytest.mark.parametrize('error, state', [
    (ServiceCallError('no response within 15.0 s'), State.PRIMARY_STATE_INACTIVE),
    (ServiceUnavailable('service not available'), State.PRIMARY_STATE_ACTIVE)])
def test_otherwise_the_lost_state_change_stays_an_error(error, state):
    client = FakeLifecycle(error, state)
    with pytest.raises(type(error)):
        changed(client, '/m/layer_0', ACTIVATE)
    assert client.changes == 1
