"""Deployer.deploy over fakes: a lost discovery of a new layer is retried once, nothing else."""
from __future__ import annotations

from pathlib import Path

from dff_lifecycle.core.config import load_layer_config, load_model_config
from dff_lifecycle.master.deployer import DEPLOY_ATTEMPTS, Deployer, DeployerSettings
from dff_lifecycle.master.lifecycle_manager import BringUpError
from dff_lifecycle.master.plan import build_plan
from dff_lifecycle.ros.lifecycle_client import LifecycleError
from dff_lifecycle.ros.service_calls import ServiceCallError, ServiceUnavailable
import pytest

REPO = Path(__file__).resolve().parents[2]
LAYERS = load_layer_config(REPO / 'params' / 'layers.yaml')
SERVERS = ['server_1', 'server_2']
STATE_IDS = {'unconfigured': 1, 'inactive': 2, 'active': 3}
GOAL = {'configure': 'inactive', 'activate': 'active', 'deactivate': 'inactive',
        'cleanup': 'unconfigured'}


def plan():
    model = load_model_config({'name': 'm', 'dataset': 'mnist', 'supervised': True,
                               'layers': [[-1, 'FFDense', [8]], [-1, 'FFDense', [8]]]}, LAYERS)
    return build_plan(model, SERVERS)


class Lifecycle:
    """Fresh nodes per creation; `failures` are raised once each, in order, at configure."""

    def __init__(self, failures: list[Exception]) -> None:
        self.failures = list(failures)
        self.states: dict[str, str] = {}
        self.get_state_calls: list[str] = []

    def created(self, nodes: list[str]) -> None:
        self.states = dict.fromkeys(nodes, 'unconfigured')

    def transition(self, node: str, label: str) -> None:
        if label == 'configure' and node.endswith('layer_1') and self.failures:
            raise self.failures.pop(0)
        self.states[node] = GOAL[label]

    def get_state(self, node: str) -> tuple[int, str]:
        self.get_state_calls.append(node)
        return STATE_IDS[self.states[node]], self.states[node]


class Endpoints:

    def __init__(self) -> None:
        self.opened = self.closed = 0

    def open(self) -> None:  # noqa: A003 (the protocol's name)
        self.opened += 1

    def wait_connected(self, timeout_s: float) -> None:
        pass

    def close(self) -> None:
        self.closed += 1


def deployer(failures: list[Exception]) -> tuple[Deployer, Lifecycle, list[str], list[str]]:
    log: list[str] = []
    made: list[str] = []
    d = Deployer(None, None, DeployerSettings(servers=2, service_timeout_s=1.0,
                                              discovery_timeout_s=1.0), log=log.append)
    lifecycle = Lifecycle(failures)
    d.lifecycle = lifecycle

    def create(model, jobs, checkpoints={}):
        nodes = [p.full_name for ps in jobs.values() for p in ps]
        made.extend(nodes)
        lifecycle.created(nodes)

    d._create = create
    d.delete_model = lambda *args, **kwargs: None
    return d, lifecycle, made, log


def test_a_layer_never_discovered_is_created_anew_once_and_the_bring_up_succeeds():
    d, lifecycle, made, log = deployer([ServiceUnavailable('service /m/layer_1/get_state '
                                                           'not available after 1.0 s')])
    endpoints = Endpoints()
    manager = d.deploy(plan(), SERVERS, endpoints)
    assert made == ['/m/layer_0', '/m/layer_1'] * 2
    assert set(lifecycle.states.values()) == {'active'}
    assert manager.nodes == ['/m/layer_0', '/m/layer_1']
    assert (endpoints.opened, endpoints.closed) == (2, 1)
    # The failed try's teardown asked only the discovered node for its state.
    assert lifecycle.get_state_calls == ['/m/layer_0']


def test_a_discovery_lost_on_every_try_ends_the_bring_up():
    lost = [ServiceUnavailable(f'not available, try {i}') for i in range(DEPLOY_ATTEMPTS)]
    d, _, made, _ = deployer(lost)
    with pytest.raises(BringUpError, match=f'try {DEPLOY_ATTEMPTS - 1}'):
        d.deploy(plan(), SERVERS, Endpoints())
    assert len(made) == 2 * DEPLOY_ATTEMPTS


@pytest.mark.parametrize('failure', [LifecycleError('/m/layer_1: refused'),
                                     ServiceCallError('/m/layer_1/change_state: no response')])
def test_other_bring_up_failures_are_not_retried(failure):
    d, _, made, _ = deployer([failure])
    with pytest.raises(BringUpError):
        d.deploy(plan(), SERVERS, Endpoints())
    assert len(made) == 2
