"""LifecycleManager over a fake client, then LifecycleClient and the manager on real stub nodes.

Like nav2's lifecycle manager test: stub managed nodes in this process whose transition
callbacks can be told to fail, driven only through the lifecycle_msgs services.
"""
from __future__ import annotations

from contextlib import contextmanager
import threading
import time
from typing import Iterator, Optional

from dff_lifecycle.master.lifecycle_manager import BringUpError, LifecycleManager
from dff_lifecycle.ros.lifecycle_client import LifecycleClient, LifecycleError
from dff_lifecycle.ros.process import ros_process
from dff_lifecycle.ros.service_calls import ClientCache, ServiceCallError, ServiceTimeout
from lifecycle_msgs.msg import State, Transition
import pytest
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.node import Node

NODES = ['/m/layer_0', '/m/layer_1', '/m/layer_2']
STATE_IDS = {'unconfigured': State.PRIMARY_STATE_UNCONFIGURED,
             'inactive': State.PRIMARY_STATE_INACTIVE,
             'active': State.PRIMARY_STATE_ACTIVE,
             'finalized': State.PRIMARY_STATE_FINALIZED}
GOAL = {'configure': 'inactive', 'activate': 'active', 'deactivate': 'inactive',
        'cleanup': 'unconfigured', 'shutdown': 'finalized'}


# ------------------------------------------------------------------------ (a) a fake client

class FakeClient:
    """The two methods the manager uses; records every call, fails where told."""

    def __init__(self, states: Optional[dict[str, str]] = None, nodes=NODES) -> None:
        self.states = dict.fromkeys(nodes, 'unconfigured')
        self.states.update(states or {})
        self.calls: list[tuple[str, str]] = []  # (node, transition label or 'get_state')
        self.failures: dict[tuple[str, str], Exception] = {}

    def fail(self, node: str, what: str, exc: Exception) -> None:
        self.failures[(node, what)] = exc

    def transition(self, node: str, label: str) -> None:
        self.calls.append((node, label))
        if (node, label) in self.failures:
            raise self.failures[(node, label)]
        self.states[node] = GOAL[label]

    def get_state(self, node: str) -> tuple[int, str]:
        self.calls.append((node, 'get_state'))
        if (node, 'get_state') in self.failures:
            raise self.failures[(node, 'get_state')]
        label = self.states[node]
        return STATE_IDS[label], label

    def transitions(self) -> list[tuple[str, str]]:
        return [c for c in self.calls if c[1] != 'get_state']


def manager(client, nodes=NODES, parallel=False) -> LifecycleManager:
    return LifecycleManager(client, nodes, log=lambda _text: None, parallel=parallel)


class SlowClient(FakeClient):
    """Each transition takes `delay_s`, from whatever thread calls it."""

    def __init__(self, delay_s: float) -> None:
        super().__init__()
        self.delay_s = delay_s
        self.lock = threading.Lock()
        self.spans: list[tuple[str, str, float, float]] = []

    def transition(self, node: str, label: str) -> None:
        started = time.monotonic()
        time.sleep(self.delay_s)
        with self.lock:
            super().transition(node, label)
            self.spans.append((node, label, started, time.monotonic()))


def test_parallel_startup_overlaps_calls_but_keeps_the_phases_apart():
    client = SlowClient(0.2)
    started = time.monotonic()
    manager(client, parallel=True).startup()
    assert time.monotonic() - started < 0.2 * 2 * len(NODES) * 0.6  # calls overlapped
    last_configure = max(end for _, label, _, end in client.spans if label == 'configure')
    first_activate = min(start for _, label, start, _ in client.spans if label == 'activate')
    assert last_configure <= first_activate  # nav2: every node configured before any activates
    assert set(client.states.values()) == {'active'}


def test_parallel_startup_raises_the_first_failure_in_order_and_activates_nothing():
    client = FakeClient()
    client.fail(NODES[2], 'configure', LifecycleError('late'))
    client.fail(NODES[1], 'configure', ServiceCallError('early'))
    with pytest.raises(BringUpError) as info:
        manager(client, parallel=True).startup()
    assert info.value.node == NODES[1]
    assert not [c for c in client.calls if c[1] == 'activate']


def test_a_configure_that_times_out_names_the_parameter_to_raise():
    """A large layer's configure (building or loading GiBs) can outlast the call timeout."""
    client = FakeClient()
    client.fail(NODES[1], 'configure', ServiceTimeout('change_state: no response within 30.0 s'))
    with pytest.raises(BringUpError) as err:
        manager(client).startup()
    assert 'service_timeout_s' in str(err.value) and '\n' not in str(err.value)
    client = FakeClient({NODES[1]: 'inactive'})  # other transitions: no such hint
    client.fail(NODES[1], 'activate', ServiceTimeout('change_state: no response within 30.0 s'))
    with pytest.raises(BringUpError) as err:
        manager(client).startup()
    assert 'service_timeout_s' not in str(err.value)


def test_startup_configures_all_before_activating_any():
    client = FakeClient()
    manager(client).startup()
    assert client.calls == ([(n, 'configure') for n in NODES] + [(n, 'activate') for n in NODES])
    assert set(client.states.values()) == {'active'}


def test_manager_keeps_its_own_copy_of_the_order():
    nodes = list(NODES)
    m = manager(FakeClient(), nodes)
    nodes.reverse()
    assert m.nodes == NODES


@pytest.mark.parametrize('exc', [LifecycleError('refused'), ServiceCallError('timed out')])
def test_startup_stops_at_the_first_configure_failure(exc):
    client = FakeClient()
    client.fail(NODES[1], 'configure', exc)
    with pytest.raises(BringUpError) as info:
        manager(client).startup()
    assert (info.value.node, info.value.transition) == (NODES[1], 'configure')
    assert info.value.__cause__ is exc
    assert client.calls == [(NODES[0], 'configure'), (NODES[1], 'configure')]


def test_startup_stops_at_the_first_activate_failure():
    client = FakeClient()
    client.fail(NODES[0], 'activate', LifecycleError('refused'))
    with pytest.raises(BringUpError) as info:
        manager(client).startup()
    assert (info.value.node, info.value.transition) == (NODES[0], 'activate')
    assert client.calls == [(n, 'configure') for n in NODES] + [(NODES[0], 'activate')]


def test_other_errors_are_not_bring_up_errors():
    client = FakeClient()
    client.fail(NODES[0], 'configure', KeyError('a bug, not a node failure'))
    with pytest.raises(KeyError):
        manager(client).startup()


def test_pause_deactivates_in_reverse_and_resume_activates_in_order():
    client = FakeClient(dict.fromkeys(NODES, 'active'))
    m = manager(client)
    m.pause()
    assert client.calls == [(n, 'deactivate') for n in reversed(NODES)]
    client.calls.clear()
    m.resume()
    assert client.calls == [(n, 'activate') for n in NODES]


def test_pause_failure_raises_bring_up_error_and_stops():
    client = FakeClient(dict.fromkeys(NODES, 'active'))
    client.fail(NODES[1], 'deactivate', ServiceCallError('no response'))
    with pytest.raises(BringUpError) as info:
        manager(client).pause()
    assert (info.value.node, info.value.transition) == (NODES[1], 'deactivate')
    assert client.calls == [(NODES[2], 'deactivate'), (NODES[1], 'deactivate')]


def test_states_maps_unreachable_nodes():
    client = FakeClient({NODES[0]: 'active', NODES[2]: 'inactive'})
    client.fail(NODES[1], 'get_state', ServiceCallError('gone'))
    states = manager(client).states()
    assert list(states) == NODES
    assert states[NODES[0]] == 'active' and states[NODES[2]] == 'inactive'
    assert states[NODES[1]].startswith('unreachable (') and 'gone' in states[NODES[1]]


def test_shutdown_walks_back_as_far_as_each_node_allows():
    nodes = ['/m/a', '/m/b', '/m/c', '/m/d']
    client = FakeClient({'/m/a': 'active', '/m/b': 'inactive', '/m/c': 'unconfigured',
                         '/m/d': 'finalized'}, nodes)
    assert manager(client, nodes).shutdown() == []
    assert client.transitions() == [('/m/b', 'cleanup'), ('/m/a', 'deactivate'),
                                    ('/m/a', 'cleanup')]
    assert [n for n, what in client.calls if what == 'get_state'] == list(reversed(nodes))
    assert client.states == {'/m/a': 'unconfigured', '/m/b': 'unconfigured',
                             '/m/c': 'unconfigured', '/m/d': 'finalized'}


def test_shutdown_continues_past_failures_and_reports_them():
    client = FakeClient(dict.fromkeys(NODES, 'active'))
    client.fail(NODES[2], 'deactivate', LifecycleError('refused'))
    client.fail(NODES[1], 'get_state', ServiceCallError('no response'))
    client.fail(NODES[0], 'cleanup', LifecycleError('cleanup refused'))
    problems = manager(client).shutdown()
    assert len(problems) == 3
    assert [p.split(':')[0] for p in problems] == [NODES[2], NODES[1], NODES[0]]
    assert client.transitions() == [(NODES[2], 'deactivate'), (NODES[0], 'deactivate'),
                                    (NODES[0], 'cleanup')]


def test_shutdown_skips_gone_nodes_and_reports_them():
    client = FakeClient(dict.fromkeys(NODES, 'active'))
    problems = manager(client).shutdown(skip={NODES[1]})
    assert problems == [f'{NODES[1]}: gone']
    assert all(node != NODES[1] for node, _ in client.calls)
    assert client.states[NODES[1]] == 'active'
    assert client.states[NODES[0]] == client.states[NODES[2]] == 'unconfigured'


def test_transition_checks_the_goal_state():
    """Accepted, but get_state shows another state (nav2's check): LifecycleError."""
    client = LifecycleClient(clients=None)
    client.change_state = lambda node, label: True
    client.get_state = lambda node: (State.PRIMARY_STATE_UNCONFIGURED, 'unconfigured')
    client.transition('/m/layer_0', 'cleanup')  # the goal state: fine
    with pytest.raises(LifecycleError):
        client.transition('/m/layer_0', 'activate')


# ------------------------------------------------------------------------ (b) real stub nodes

class StubNode(LifecycleNode):
    """A managed node whose callbacks return `results[label]` (default SUCCESS)."""

    def __init__(self, name: str, context) -> None:
        super().__init__(name, namespace='/stub', context=context)
        self.results: dict[str, TransitionCallbackReturn] = {}
        self.called: list[str] = []

    @property
    def label(self) -> str:
        return self._state_machine.current_state[1]

    def _result(self, label: str) -> TransitionCallbackReturn:
        self.called.append(label)
        return self.results.get(label, TransitionCallbackReturn.SUCCESS)

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._result('configure')

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._result('activate')

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._result('deactivate')

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._result('cleanup')

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._result('shutdown')


@contextmanager
def stub_graph(count: int, timeout_s: float = 3.0) -> Iterator[tuple[list[StubNode],
                                                                     LifecycleClient]]:
    """`count` stub nodes and a lifecycle client, spun in one private context."""
    stubs: list[StubNode] = []
    try:
        with ros_process([], own_context=True) as ros:
            client_node = Node('lifecycle_test_client', context=ros.context)
            stubs.extend(StubNode(f'layer_{i}', ros.context) for i in range(count))
            ros.start(client_node, *stubs, threads=2)
            yield stubs, LifecycleClient(ClientCache(client_node), timeout_s=timeout_s)
    finally:  # ros_process destroyed the nodes; the state machines need this too (rclpy 9)
        for stub in stubs:
            stub._state_machine.destroy_when_not_in_use()


def names(stubs: list[StubNode]) -> list[str]:
    return [stub.get_fully_qualified_name() for stub in stubs]


def test_manager_drives_real_nodes_through_their_lifecycle(ros_domain):
    with stub_graph(2) as (stubs, client):
        m = manager(client, names(stubs))
        assert m.states() == dict.fromkeys(names(stubs), 'unconfigured')
        m.startup()
        assert [s.label for s in stubs] == ['active', 'active']
        assert stubs[0].called == ['configure', 'activate']
        m.pause()
        assert [s.label for s in stubs] == ['inactive', 'inactive']
        assert m.states() == dict.fromkeys(names(stubs), 'inactive')
        m.resume()
        assert [s.label for s in stubs] == ['active', 'active']
        assert m.shutdown() == []
        assert [s.label for s in stubs] == ['unconfigured', 'unconfigured']
        assert stubs[1].called == ['configure', 'activate', 'deactivate', 'activate',
                                   'deactivate', 'cleanup']


def test_failing_configure_raises_and_stops_bring_up(ros_domain):
    with stub_graph(3) as (stubs, client):
        stubs[1].results['configure'] = TransitionCallbackReturn.FAILURE
        with pytest.raises(LifecycleError):
            client.transition(names(stubs)[1], 'configure')
        assert stubs[1].label == 'unconfigured'
        stubs[1].called.clear()
        with pytest.raises(BringUpError) as info:
            manager(client, names(stubs)).startup()
        assert (info.value.node, info.value.transition) == (names(stubs)[1], 'configure')
        assert [s.label for s in stubs] == ['inactive', 'unconfigured', 'unconfigured']
        assert stubs[2].called == []
        assert manager(client, names(stubs)).shutdown() == []
        assert [s.label for s in stubs] == ['unconfigured'] * 3


def test_failing_activate_leaves_configured_nodes_inactive(ros_domain):
    with stub_graph(2) as (stubs, client):
        stubs[0].results['activate'] = TransitionCallbackReturn.FAILURE
        with pytest.raises(BringUpError) as info:
            manager(client, names(stubs)).startup()
        assert (info.value.node, info.value.transition) == (names(stubs)[0], 'activate')
        assert [s.label for s in stubs] == ['inactive', 'inactive']
        assert stubs[1].called == ['configure']


def test_change_state_by_id_and_available_transitions(ros_domain):
    with stub_graph(1) as (stubs, client):
        node = names(stubs)[0]
        assert client.get_state(node) == (State.PRIMARY_STATE_UNCONFIGURED, 'unconfigured')
        available = client.available_transitions(node)
        assert {t.label for t in available} == {'configure', 'shutdown'}
        assert {t.start_label for t in available} == {'unconfigured'}
        assert client.change_state(node, Transition.TRANSITION_CONFIGURE) is True
        assert stubs[0].label == 'inactive'
        assert {t.label for t in client.available_transitions(node)} == {
            'activate', 'cleanup', 'shutdown'}
        # A transition that does not start from the current state is refused.
        assert client.change_state(node, Transition.TRANSITION_DEACTIVATE) is False
        assert client.change_state(node, 'no_such_transition') is False
        assert stubs[0].label == 'inactive'
        with pytest.raises(LifecycleError):
            client.transition(node, 'deactivate')
        assert client.change_state(node, 'activate') is True
        assert client.get_state(node) == (State.PRIMARY_STATE_ACTIVE, 'active')


def test_unreachable_node(ros_domain):
    with stub_graph(1, timeout_s=0.2) as (stubs, client):
        missing = '/stub/no_such_layer'
        with pytest.raises(ServiceCallError):
            client.get_state(missing)
        states = manager(client, [names(stubs)[0], missing]).states()
        assert states[names(stubs)[0]] == 'unconfigured'
        assert states[missing].startswith('unreachable (')
        with pytest.raises(BringUpError) as info:
            manager(client, [missing]).startup()
        assert (info.value.node, info.value.transition) == (missing, 'configure')
