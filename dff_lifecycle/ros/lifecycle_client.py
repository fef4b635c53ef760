"""
Drive managed nodes through the standard lifecycle_msgs services only.

This is exactly what `ros2 lifecycle` does: `<node>/get_state`,
`<node>/get_available_transitions` and `<node>/change_state` (by label or id).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from dff_lifecycle.ros.service_calls import call, ClientCache
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetAvailableStates, GetAvailableTransitions, GetState

# Primary state a successful transition ends in (nav2 checks this with get_state).
GOAL_STATE = {
    'configure': State.PRIMARY_STATE_INACTIVE,
    'activate': State.PRIMARY_STATE_ACTIVE,
    'deactivate': State.PRIMARY_STATE_INACTIVE,
    'cleanup': State.PRIMARY_STATE_UNCONFIGURED,
    'shutdown': State.PRIMARY_STATE_FINALIZED,
}
TRANSITION_LABEL_BY_ID = {
    Transition.TRANSITION_CONFIGURE: 'configure',
    Transition.TRANSITION_CLEANUP: 'cleanup',
    Transition.TRANSITION_ACTIVATE: 'activate',
    Transition.TRANSITION_DEACTIVATE: 'deactivate',
    Transition.TRANSITION_UNCONFIGURED_SHUTDOWN: 'shutdown',
    Transition.TRANSITION_INACTIVE_SHUTDOWN: 'shutdown',
    Transition.TRANSITION_ACTIVE_SHUTDOWN: 'shutdown',
}


@dataclass(frozen=True)
class TransitionInfo:
    id: int  # noqa: A003 (the transition id, as in lifecycle_msgs/Transition)
    label: str
    start_label: str
    goal_label: str


class LifecycleError(RuntimeError):
    """A lifecycle transition was refused or did not reach its goal state."""


class LifecycleClient:
    """Lifecycle services of many nodes, through one helper node."""

    def __init__(self, clients: ClientCache, timeout_s: float = 5.0,
                 resend_s: Optional[float] = None) -> None:
        """
        Use `clients`; with `resend_s`, ask a query again after that long unanswered.

        See `service_calls.call`. For short-lived tools, whose brand-new clients meet
        servers that have not discovered them yet; not for the master, where each resend
        would be one more request to a server on a starved device that is slow already.
        """
        self._clients = clients
        self.timeout_s = timeout_s
        self.resend_s = resend_s

    def reachable(self, node: str) -> bool:
        """Return True when `<node>/get_state` has a matched server (not the graph's word)."""
        return self._clients.get(GetState, f'{node}/get_state').service_is_ready()

    def get_state(self, node: str) -> tuple[int, str]:
        response = call(self._clients.get(GetState, f'{node}/get_state'),
                        GetState.Request(), self.timeout_s, resend_s=self.resend_s)
        return response.current_state.id, response.current_state.label

    def available_states(self, node: str) -> list[tuple[int, str]]:
        response = call(self._clients.get(GetAvailableStates, f'{node}/get_available_states'),
                        GetAvailableStates.Request(), self.timeout_s, resend_s=self.resend_s)
        return [(s.id, s.label) for s in response.available_states]

    def available_transitions(self, node: str) -> list[TransitionInfo]:
        return self._transitions(node, 'get_available_transitions')

    def transition_graph(self, node: str) -> list[TransitionInfo]:
        """Every transition of the node's state machine, not only those from its state."""
        return self._transitions(node, 'get_transition_graph')

    def _transitions(self, node: str, service: str) -> list[TransitionInfo]:
        response = call(self._clients.get(GetAvailableTransitions, f'{node}/{service}'),
                        GetAvailableTransitions.Request(), self.timeout_s, resend_s=self.resend_s)
        return [TransitionInfo(t.transition.id, t.transition.label, t.start_state.label,
                               t.goal_state.label) for t in response.available_transitions]

    def change_state(self, node: str, transition: str | int) -> bool:
        """Request a transition by label ('configure') or id (1); True when accepted."""
        request = ChangeState.Request()
        if isinstance(transition, int):
            request.transition.id = transition
        else:
            request.transition.label = transition
        response = call(self._clients.get(ChangeState, f'{node}/change_state'),
                        request, self.timeout_s)
        return bool(response.success)

    def transition(self, node: str, label: str) -> None:
        """Nav2-style: the call must succeed AND get_state must show the goal state."""
        if not self.change_state(node, label):
            _, current = self.get_state(node)
            raise LifecycleError(f'{node}: transition "{label}" refused (state: {current})')
        state_id, current = self.get_state(node)
        if state_id != GOAL_STATE[label]:
            raise LifecycleError(f'{node}: after "{label}" the node is "{current}"')
