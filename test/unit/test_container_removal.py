"""A hosted layer is removed once, whichever path asks first (shutdown, DeleteModel, finalized)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
import threading

from dff_lifecycle.nodes.server_container import ServerContainer


class FakeLayer:
    """Counts what the container does to it."""

    lifecycle_label = 'active'

    def __init__(self) -> None:
        self.shutdowns = self.destroys = self.releases = 0
        self.discard_weights_on_shutdown = False
        self._state_machine = self

    def get_fully_qualified_name(self) -> str:
        return '/m/layer_0'

    def trigger_shutdown(self) -> None:
        self.shutdowns += 1

    def destroy_node(self) -> None:
        self.destroys += 1

    def destroy_when_not_in_use(self) -> None:
        self.releases += 1


class FakeExecutor:
    """Removes nodes from nothing."""

    def remove_node(self, _node) -> None:
        pass


def container_with(layer: FakeLayer) -> ServerContainer:
    """Build the container's removal state without a ROS node around it."""
    server = ServerContainer.__new__(ServerContainer)
    server._layers = {layer.get_fully_qualified_name(): layer}
    server._lock = threading.Lock()
    server._executor = FakeExecutor()
    return server


def test_the_second_removal_of_a_layer_does_nothing():
    layer = FakeLayer()
    server = container_with(layer)
    assert server._remove(layer, save=True) is True
    assert server._remove(layer, save=False) is False
    assert (layer.shutdowns, layer.destroys, layer.releases) == (1, 1, 1)
    assert layer.discard_weights_on_shutdown is False  # the first caller's choice stands


def test_removals_racing_from_two_threads_destroy_the_node_once():
    for _ in range(50):
        layer = FakeLayer()
        server = container_with(layer)
        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(lambda save: server._remove(layer, save), [True, True]))
        assert sorted(results) == [False, True]
        assert layer.destroys == 1 and server._layers == {}
