"""
Deployment of a planned model: bring-up of its layers, and teardown.

Discover the servers, create the layers, bring them up nav2-style, and tear them
down again.

Bring-up creates every layer on its server (all or nothing), opens the master's
pipeline endpoints, configures every layer, then activates every layer, and
waits until every topic of the pipeline has both ends. Any failure tears down
what was made, in reverse, and raises. Teardown is best effort and skips the
layers whose server is gone instead of waiting for their timeouts.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
import os
import time
from typing import Any, Callable, Mapping, Optional, Protocol

from dff_lifecycle.common.names import join, NAMESPACE, node_names, server_indices, server_name
from dff_lifecycle.core.run.file_pieces import Assembly, Piece, PIECE_BYTES
from dff_lifecycle.master.checkpoints import Checkpoint
from dff_lifecycle.master.errors import PipelineError
from dff_lifecycle.master.lifecycle_manager import BringUpError, LifecycleManager
from dff_lifecycle.master.plan import DistributionPlan, LayerPlacement
from dff_lifecycle.ros.lifecycle_client import LifecycleClient
from dff_lifecycle.ros.service_calls import (call, ClientCache, ServiceCallError,
                                             ServiceUnavailable)
from dff_msgs.msg import LayerCheckpoint, LayerSpec
from dff_msgs.srv import CreateLayers, DeleteModel, GetCheckpoints, ListLayers, SaveModel
from rclpy.node import Node
from rclpy.parameter import Parameter

Log = Callable[[str], None]

TWIN_GRACE_S = 5.0  # how long two servers of one name may show (a lingering old participant)
DEPLOY_ATTEMPTS = 2  # a second bring-up only after a discovery loss (see Deployer.deploy)


class PipelineEndpoints(Protocol):
    """The master's own ends of the pipeline (`pipeline_io.PipelineIO`)."""

    def open(self) -> None: ...  # noqa: A003 (PipelineIO.open, a method name)

    def wait_connected(self, timeout_s: float) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class DeployerSettings:
    servers: int                 # how many server containers to wait for
    service_timeout_s: float
    discovery_timeout_s: float
    parallel: bool = True        # independent lifecycle calls at once (nav2 order kept)


class Deployer:
    """Creates, brings up and removes one model's layers on the server containers."""

    def __init__(self, node: Node, clients: ClientCache, settings: DeployerSettings,
                 log: Log = print) -> None:
        self.node = node
        self.clients = clients
        self.settings = settings
        self.lifecycle = LifecycleClient(clients, settings.service_timeout_s)
        self.log = log
        self.bring_up_seconds: Optional[float] = None

    # ----------------------------------------------------------------- discovery
    def present_nodes(self) -> set[str]:
        return node_names(self.node.get_node_names_and_namespaces())

    def discover_servers(self) -> list[str]:  # noqa: C901 (one polling loop)
        """Wait until the expected number of servers offer create_layers."""
        wanted = self.settings.servers
        deadline = time.monotonic() + self.settings.discovery_timeout_s
        twins_since: Optional[float] = None
        while True:
            names = [server_name(i) for i in
                     server_indices(self.node.get_node_names_and_namespaces())]
            twins = sorted({n for n in names if names.count(n) > 1})
            # A restarted container's old participant lingers for its lease (3 s); two
            # live containers of one name are another run on this domain: calls would
            # reach either, so nothing can be deployed safely.
            twins_since = (twins_since or time.monotonic()) if twins else None
            if twins and time.monotonic() - twins_since > TWIN_GRACE_S:
                domain = os.environ.get('ROS_DOMAIN_ID', '0')
                raise PipelineError(f'{len(names) - len(set(names)) + 1} server containers '
                                    f'are named {twins[0]} on ROS_DOMAIN_ID {domain}: another '
                                    'run shares this domain; give each run its own '
                                    'ROS_DOMAIN_ID')
            services = {n for n, _ in self.node.get_service_names_and_types()}
            ready = sorted({n for n in names if f'{join(NAMESPACE, n)}/create_layers' in services},
                           key=names.index)
            if len(ready) >= wanted and not twins:
                return ready
            if time.monotonic() > deadline:
                raise PipelineError(f'found {len(ready)} server container(s) {ready}, expected '
                                    f'{wanted}; start them with `server_container`')
            time.sleep(0.2)

    # ------------------------------------------------------------------ services
    def _server_call(self, server: str, srv_type: Any, service: str, request: Any,
                     timeout_s: Optional[float] = None) -> Any:
        client = self.clients.get(srv_type, f'{join(NAMESPACE, server)}/{service}')
        return call(client, request, timeout_s or self.settings.service_timeout_s)

    def delete_model(self, model: str, servers: list[str], quiet: bool = False,
                     save: bool = True) -> None:
        """Remove the model's layers (weights saved unless not `save`) from every server."""
        for server in servers:
            try:
                response = self._server_call(server, DeleteModel, 'delete_model',
                                             DeleteModel.Request(model=model, save_weights=save))
            except ServiceCallError as exc:
                self.log(f'{server}: could not delete {model}: {exc}')
                continue
            if response.removed_nodes:
                stale = 'stale ' if quiet else ''
                self.log(f'{server}: removed {stale}{", ".join(response.removed_nodes)}')

    def probe(self, server: str, timeout_s: float) -> bool:
        """Return True if the server answers `list_layers` within `timeout_s` (it lives)."""
        try:
            self._server_call(server, ListLayers, 'list_layers', ListLayers.Request(),
                              timeout_s=timeout_s)
        except ServiceCallError:
            return False
        return True

    def hosted(self, server: str, model: str, timeout_s: float) -> Optional[dict[str, str]]:
        """
        {node: lifecycle state} of the model's layers on `server`; None: no answer.

        The server also publishes its entry in the ROS graph again (ListLayers `announce`).
        """
        try:
            response = self._server_call(server, ListLayers, 'list_layers',
                                         ListLayers.Request(model=model, announce=True),
                                         timeout_s=timeout_s)
        except ServiceCallError:
            return None
        return {layer.node_name: layer.state_label for layer in response.layers}

    def memory_room(self, server: str, timeout_s: float) -> Optional[int]:
        """Bytes the server may still allocate; None: unknown or no answer."""
        try:
            response = self._server_call(server, ListLayers, 'list_layers',
                                         ListLayers.Request(), timeout_s=timeout_s)
        except ServiceCallError:
            return None
        return response.memory_room_bytes or None

    def save_model(self, model: str, servers: list[str]) -> list[str]:
        """Every server saves the model's layers; the files written."""
        files = []
        for server in servers:
            response = self._server_call(server, SaveModel, 'save_model',
                                         SaveModel.Request(model=model))
            if not response.success:
                raise PipelineError(f'{server} could not save: {response.message}')
            files += response.files
        return files

    # ------------------------------------------------------------ bring-up / down
    def _create(self, model: str, jobs: dict[str, list[LayerPlacement]],
                checkpoints: Mapping[str, bytes] = {}) -> None:
        """Every server creates its layers, all servers at once; raise if any failed."""
        def create(server: str, placements: list) -> Any:
            request = CreateLayers.Request(layers=[
                LayerSpec(model=model, layer_index=p.layer.index, layer_type=p.layer.module,
                          node_name=p.node_name,
                          parameters=[Parameter(k, value=v).to_parameter_msg()
                                      for k, v in p.parameters.items()],
                          checkpoint=checkpoints.get(p.full_name, b''))
                for p in placements])
            try:
                return self._server_call(server, CreateLayers, 'create_layers', request)
            except ServiceCallError as exc:
                return CreateLayers.Response(success=False, message=str(exc))

        with ThreadPoolExecutor(max_workers=max(1, len(jobs))) as pool:
            responses = dict(zip(jobs, pool.map(create, jobs, jobs.values())))
        failed = {s: r.message for s, r in responses.items() if not r.success}
        if failed:
            server, message = next(iter(failed.items()))
            raise PipelineError(f'{server} could not create layers: {message}')
        for server, response in responses.items():
            self.log(f'{server}: created {", ".join(response.node_names)}')

    def move_in(self, model: str, moved: list[LayerPlacement],
                checkpoints: Mapping[str, bytes]) -> None:
        """Create moved layers on their new servers (from `checkpoints`), then bring them up."""
        jobs: dict[str, list[LayerPlacement]] = {}
        for p in moved:
            jobs.setdefault(p.server, []).append(p)
        self._create(model, jobs, checkpoints)
        manager = LifecycleManager(self.lifecycle, [p.full_name for p in moved], log=self.log,
                                   parallel=self.settings.parallel)
        try:
            manager.startup()
        except BringUpError as exc:
            raise PipelineError(f'recovery failed: {exc}') from exc

    def fetch_checkpoints(self, server: str, model: str,
                          held: Mapping[str, int]) -> list[Checkpoint]:
        """Return the server's checkpoints of `model` newer than those `held` ({node: batches})."""
        request = GetCheckpoints.Request(model=model, node_names=list(held),
                                         batches_seen=list(held.values()),
                                         max_bytes=PIECE_BYTES)
        response = self._checkpoint_call(server, request)
        if not response.success:
            self.log(f'{server}: some checkpoints unreadable: {response.message}')
        fetched = []
        for first in response.checkpoints:
            # The rest of a large file, piece by piece: the server serves other calls, and
            # asserts its liveliness, in between. A file replaced meanwhile is dropped: the
            # next pull brings the newer one.
            assembly = Assembly(_piece(first))
            while not assembly.complete:
                more = self._checkpoint_call(server, GetCheckpoints.Request(
                    model=model, node_name=first.node_name, etag=assembly.etag,
                    offset=assembly.received, max_bytes=PIECE_BYTES))
                if not more.success or len(more.checkpoints) != 1:
                    break
                try:
                    assembly.add(_piece(more.checkpoints[0]))
                except ValueError as exc:  # not the continuation asked for: drop it
                    self.log(f'{server}: checkpoint of {first.node_name}: {exc}')
                    break
            if assembly.complete:
                fetched.append(Checkpoint(first.node_name, first.batches_seen,
                                          assembly.bytes()))
        return fetched

    def _checkpoint_call(self, server: str, request: GetCheckpoints.Request
                         ) -> GetCheckpoints.Response:
        # Short: the next pull comes within seconds, and a lost server must not hold it up.
        return self._server_call(server, GetCheckpoints, 'get_checkpoints', request,
                                 timeout_s=min(5.0, self.settings.service_timeout_s))

    def deploy(self, plan: DistributionPlan, servers: list[str],
               endpoints: PipelineEndpoints) -> LifecycleManager:
        """
        Create, configure all, activate all, connect; on failure undo and raise.

        A bring-up that failed only because a just-created layer's services were never
        discovered is undone and tried once more: the middleware can lose the discovery
        of a new node's endpoints under load (seen in CI: change_state of a new layer
        answered, its get_state stayed unknown for 30 s), and new nodes are announced
        anew. Any other failure is raised at once.
        """
        for attempt in range(1, DEPLOY_ATTEMPTS + 1):
            try:
                return self._deploy_once(plan, servers, endpoints)
            except BringUpError as exc:
                if attempt == DEPLOY_ATTEMPTS or not isinstance(exc.__cause__,
                                                                ServiceUnavailable):
                    raise
                self.log(f'bring-up: {exc}; the layers are created anew '
                         f'(try {attempt + 1} of {DEPLOY_ATTEMPTS})')
        raise AssertionError('unreachable')

    def _deploy_once(self, plan: DistributionPlan, servers: list[str],
                     endpoints: PipelineEndpoints) -> LifecycleManager:
        self.delete_model(plan.model, servers, quiet=True)  # stale layers of a crashed run
        started = time.perf_counter()
        try:
            self._create(plan.model, plan.by_server())
        except PipelineError:
            self.delete_model(plan.model, servers, quiet=True)  # all or nothing
            raise
        endpoints.open()  # before activation: the master hears the first status messages
        manager = LifecycleManager(self.lifecycle, [p.full_name for p in plan.placements],
                                   log=self.log, parallel=self.settings.parallel)
        try:
            manager.startup()
            self.bring_up_seconds = time.perf_counter() - started
            self.log(f'bring-up: {len(plan.placements)} layer(s) on {len(plan.by_server())} '
                     f'server(s), first create to last active in {self.bring_up_seconds:.2f} s')
            endpoints.wait_connected(self.settings.discovery_timeout_s)
        except Exception as exc:
            self.log('bring-up failed: tearing down what was created')
            # A node never discovered would cost a second wait; its server removes it below.
            unseen = ({exc.node} if isinstance(exc, BringUpError)
                      and isinstance(exc.__cause__, ServiceUnavailable) else set())
            manager.shutdown(skip=unseen)
            endpoints.close()
            self.delete_model(plan.model, servers, quiet=True)
            raise
        return manager

    def teardown(self, manager: LifecycleManager, plan: DistributionPlan, servers: list[str],
                 endpoints: PipelineEndpoints, lost: frozenset[str] = frozenset()) -> None:
        """Best effort; skip layers whose server is gone or `lost` (silent: no timeouts)."""
        present = self.present_nodes()
        on_lost = {p.full_name for p in plan.placements if p.server in lost}
        problems = manager.shutdown(skip={n for n in manager.nodes
                                          if n not in present or n in on_lost})
        endpoints.close()
        self.delete_model(plan.model, [s for s in servers
                                       if join(NAMESPACE, s) in present and s not in lost])
        if problems:
            self.log('teardown problems: ' + '; '.join(problems))


def _piece(message: LayerCheckpoint) -> Piece:
    return Piece(bytes(message.data), message.offset, message.total_bytes, message.etag)
