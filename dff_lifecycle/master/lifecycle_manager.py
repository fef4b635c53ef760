"""
Nav2-style lifecycle manager over an ordered list of layer nodes.

Bring-up configures every node, then activates every node; it stops at the
first failure and says which node and why. The nodes of one phase are
independent, so their calls go out together (each still checked with
get_state); a phase ends when all of them have answered, so no node is
activated before every node is configured. Teardown walks the list in reverse
and is best effort: it keeps going and reports what failed.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Optional, Sequence

from dff_lifecycle.ros.lifecycle_client import LifecycleClient, LifecycleError
from dff_lifecycle.ros.service_calls import ServiceCallError, ServiceTimeout

Log = Callable[[str], None]


class BringUpError(RuntimeError):

    def __init__(self, node: str, transition: str, reason: str) -> None:
        super().__init__(f'{transition} of {node} failed: {reason}')
        self.node = node
        self.transition = transition


class LifecycleManager:

    def __init__(self, client: LifecycleClient, nodes: Sequence[str], log: Log = print,
                 parallel: bool = True) -> None:
        self.client = client
        self.nodes = list(nodes)  # the single source of truth for the order
        self.log = log
        self.parallel = parallel

    def _transition(self, node: str, label: str) -> Optional[BringUpError]:
        try:
            self.client.transition(node, label)
        except (LifecycleError, ServiceCallError) as exc:
            reason = str(exc)
            if label == 'configure' and isinstance(exc, ServiceTimeout):
                reason += (' (configure builds or loads the layer, which takes longer for a '
                           'large one: raise the master parameter service_timeout_s)')
            error = BringUpError(node, label, reason)
            error.__cause__ = exc  # as `raise ... from exc` would
            return error
        return None

    def _all(self, label: str, nodes: Sequence[str]) -> None:
        """Transition every node; raise the first failure in list order."""
        if self.parallel and len(nodes) > 1:
            with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
                failures = list(pool.map(lambda n: self._transition(n, label), nodes))
        else:
            failures = []
            for node in nodes:
                failures.append(self._transition(node, label))
                if failures[-1] is not None:
                    break
        for node, failure in zip(nodes, failures):
            if failure is not None:
                raise failure
            self.log(f'  {label:<10} {node}: ok')

    def startup(self) -> None:
        """Configure all, then activate all; raise BringUpError at the first failure."""
        self._all('configure', self.nodes)
        self._all('activate', self.nodes)

    def pause(self) -> None:
        self._all('deactivate', list(reversed(self.nodes)))

    def resume(self) -> None:
        self._all('activate', self.nodes)

    def states(self) -> dict[str, str]:
        out = {}
        for node in self.nodes:
            try:
                out[node] = self.client.get_state(node)[1]
            except ServiceCallError as exc:
                out[node] = f'unreachable ({exc})'
        return out

    def shutdown(self, skip: set[str] = frozenset()) -> list[str]:
        """Deactivate and clean up in reverse order, as far as each node allows."""
        problems = [f'{node}: gone' for node in self.nodes if node in skip]
        for node in reversed(self.nodes):
            if node in skip:
                continue
            try:
                state = self.client.get_state(node)[1]
                if state == 'active':
                    self.client.transition(node, 'deactivate')
                    state = 'inactive'
                if state == 'inactive':
                    self.client.transition(node, 'cleanup')
                self.log(f'  teardown   {node}: ok')
            except (LifecycleError, ServiceCallError) as exc:
                problems.append(f'{node}: {exc}')
                self.log(f'  teardown   {node}: {exc}')
        return problems
