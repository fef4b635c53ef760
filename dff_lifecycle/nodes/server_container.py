"""
Server container: one process hosting any number of FF layer nodes.

It names itself `server_<idx+1>` after the servers already present, offers the
dff_msgs create / delete / list / save services, and on SIGINT or SIGTERM shuts
every hosted layer down (weights saved) before it exits.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
import sys
import threading
import time
from typing import Any, Callable, NoReturn, Optional

from dff_lifecycle.common.cpu_limit import torch_threads, usable_cores
from dff_lifecycle.common.folders import writable_folder
from dff_lifecycle.common.freeze import Freeze, FreezeDetector, FreezeWatch
from dff_lifecycle.common.liveness import HEARTBEAT_PERIOD_S
from dff_lifecycle.common.memory_limit import process_budget
from dff_lifecycle.common.names import NAMESPACE
from dff_lifecycle.core.run.file_pieces import FileChanged, read_piece
from dff_lifecycle.core.run.weights import layer_weight_path, save_bytes_atomic
from dff_lifecycle.nodes.ff_layer_node import FFLayerNode
from dff_lifecycle.nodes.parameters import INHERITED, LAYER_PARAMETERS, SERVER_PARAMETERS
from dff_lifecycle.nodes.server_naming import claimed_server_name
from dff_lifecycle.ros.diagnostics import ContainerDiagnostics
from dff_lifecycle.ros.heartbeat import Heartbeat
from dff_lifecycle.ros.node_args import check_node_args, NodeUsage
from dff_lifecycle.ros.node_main import stop_event, wait_for
from dff_lifecycle.ros.parameters import declare_all, ParameterError, read_all
from dff_lifecycle.ros.process import exit_process, restart_process, ros_process
from dff_msgs.msg import LayerCheckpoint, LayerInfo
from dff_msgs.srv import CreateLayers, DeleteModel, GetCheckpoints, ListLayers, SaveModel
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.executors import Executor
from rclpy.node import Node
from rclpy.parameter import Parameter
from std_msgs.msg import Empty

STALL_DUMP_S = 2.0  # the freeze watch not run for this long: every thread's stack to stderr
FINALIZED_LINGER_S = 1.0  # a finalized layer stays this long, for its last messages to go out


class ServerContainer(Node):
    """Hosts layer nodes and creates or removes them on request."""

    def __init__(self, name: str, executor: Executor, **kwargs) -> None:
        super().__init__(name, namespace=NAMESPACE, **kwargs)
        declare_all(self, SERVER_PARAMETERS)
        self.settings = read_all(self, SERVER_PARAMETERS)
        self._executor = executor
        self._layers: dict[str, FFLayerNode] = {}  # fully qualified name -> node
        self._lock = threading.Lock()
        # Held by every service call and timer that touches hosted layers, and by the main
        # thread's shutdown_layers: a DeleteModel served while the container is told to stop
        # could otherwise use a layer node the other thread just destroyed (a CI run died of
        # InvalidHandle at the end of the serving launch test).
        self._hosting = threading.RLock()
        self._closing = False
        self._finalized_at: dict[str, float] = {}  # when each finalized layer was first seen
        group = MutuallyExclusiveCallbackGroup()
        serial = self._hosting_call
        self.create_service(CreateLayers, '~/create_layers', serial(self._on_create),
                            callback_group=group)
        self.create_service(DeleteModel, '~/delete_model', serial(self._on_delete),
                            callback_group=group)
        self.create_service(ListLayers, '~/list_layers', serial(self._on_list),
                            callback_group=group)
        self.create_service(SaveModel, '~/save_model', serial(self._on_save),
                            callback_group=group)
        self.create_service(GetCheckpoints, '~/get_checkpoints',
                            serial(self._on_get_checkpoints), callback_group=group)
        # Beats from a thread of their own, with the middleware's liveliness beside them:
        # a busy executor is not a dead one (ros/heartbeat.py).
        self.heartbeat = Heartbeat(self)
        # What this idle container could allocate: hosted layers claim from it (configure).
        process_budget()
        # A layer shut down by hand (finalized) can never run again: remove it, as rclcpp
        # containers unload a finalized component, so that it can be created anew.
        self.create_timer(HEARTBEAT_PERIOD_S, serial(self._remove_finalized),
                          callback_group=group)
        # /diagnostics at 1 Hz: hosted layers, memory, uptime (each layer sends its own entry).
        self._diagnostics = ContainerDiagnostics(self, lambda: self._layers_of(''),
                                                 self.settings['weight_dir'])
        self.get_logger().info(f'{self.get_fully_qualified_name()} ready; weights in '
                               f'{os.path.abspath(self.settings["weight_dir"])}')

    # ----------------------------------------------------------------- services
    def _hosting_call(self, handler: Callable[..., Any]) -> Callable[..., Any]:
        """Wrap `handler` to run while no other thread adds or removes hosted layers."""
        @functools.wraps(handler)
        def call(*args: Any) -> Any:
            with self._hosting:
                return handler(*args)
        return call

    def _on_create(self, request: CreateLayers.Request,
                   response: CreateLayers.Response) -> CreateLayers.Response:
        created: list[FFLayerNode] = []
        try:
            if self._closing:
                raise RuntimeError(f'{self.get_name()} is shutting down')
            for spec in request.layers:
                created.append(self._create_layer(spec))
        except Exception as exc:  # noqa: BLE001 - all or nothing, reported to the caller
            for node in created:
                self._remove(node, save=False)
            response.success = False
            response.message = f'{self.get_name()}: {exc}'
            self.get_logger().error(response.message)
            return response
        response.success = True
        response.node_names = [n.get_fully_qualified_name() for n in created]
        self.get_logger().info(f'created {", ".join(response.node_names)}')
        return response

    def _create_layer(self, spec) -> FFLayerNode:
        overrides = [Parameter.from_parameter_msg(p) for p in spec.parameters]
        given = {p.name for p in overrides}
        unknown = sorted(given - set(LAYER_PARAMETERS))
        if unknown:
            raise ValueError(f'layer {spec.node_name}: unknown parameters {", ".join(unknown)}')
        overrides += [Parameter(k, value=self.settings[k]) for k in INHERITED if k not in given]
        overrides.append(Parameter('server', value=self.get_name()))
        namespace = f'/{spec.model}'
        full = f'{namespace}/{spec.node_name}'
        with self._lock:
            if full in self._layers:
                raise ValueError(f'{full} already exists on this server')
        if len(spec.checkpoint):
            # A layer moved here from a lost server: its checkpoint becomes this server's
            # weight file, which configure then loads from the local disk as always.
            values = {p.name: p.value for p in overrides}
            path = layer_weight_path(values.get('weight_dir', self.settings['weight_dir']),
                                     spec.model, spec.layer_index,
                                     (values.get('shard_index', 0), values.get('shard_count', 1)),
                                     values.get('replica_index', 0))
            save_bytes_atomic(path, bytes(spec.checkpoint))
            self.get_logger().info(f'{full}: installed its checkpoint as {path}')
        with self._lock:
            # Like rclcpp component containers: process-wide arguments (a launch file's
            # name / namespace remaps, --params-file) are the container's, not the layer's.
            node = FFLayerNode(spec.node_name, namespace=namespace, parameter_overrides=overrides,
                               use_global_arguments=False)
            self._layers[full] = node
        self._executor.add_node(node)
        return node

    def _on_delete(self, request: DeleteModel.Request,
                   response: DeleteModel.Response) -> DeleteModel.Response:
        response.success = True
        for node in self._layers_of(request.model):
            name = node.get_fully_qualified_name()
            try:
                if self._remove(node, save=request.save_weights):
                    response.removed_nodes.append(name)
            except Exception as exc:  # noqa: BLE001
                response.success = False
                response.message += f'{name}: {exc}; '
        self.get_logger().info(f'deleted model {request.model!r}: {response.removed_nodes}')
        return response

    def _on_list(self, request: ListLayers.Request,
                 response: ListLayers.Response) -> ListLayers.Response:
        response.server_name = self.get_fully_qualified_name()
        for node in self._layers_of(request.model):
            state_id, label = node._state_machine.current_state
            response.layers.append(LayerInfo(
                model=node.get_parameter('model').value or '',
                layer_index=node.get_parameter('layer_index').value or 0,
                layer_type=node.get_parameter('layer_type').value,
                node_name=node.get_fully_qualified_name(), state_id=state_id,
                state_label=label))
        # The master's recovery moves a layer here only if it fits (master/plan.py).
        response.memory_room_bytes = process_budget().room() or 0
        if request.announce:
            self.announce()
        return response

    def announce(self) -> None:
        """
        Publish this process's entry in the ROS graph again (ros_discovery_info).

        rmw sends a participant's nodes and endpoints to its peers when one is created or
        destroyed, and Fast DDS sends each sample once to a peer it has matched. A peer that
        dropped this participant (stopped past its lease) and matched it again never gets
        the entry back, so this container's layers stay missing from its graph. A throwaway
        publisher, created and destroyed, sends the whole entry twice.
        """
        self.destroy_publisher(self.create_publisher(Empty, '~/announce', 1))

    def _on_save(self, request: SaveModel.Request,
                 response: SaveModel.Response) -> SaveModel.Response:
        response.success = True
        for node in self._layers_of(request.model):
            try:
                path = node.save_weights()
                if path is not None:
                    response.files.append(str(path))
            except Exception as exc:  # noqa: BLE001
                response.success = False
                response.message += f'{node.get_fully_qualified_name()}: {exc}; '
        return response

    def _on_get_checkpoints(self, request: GetCheckpoints.Request,
                            response: GetCheckpoints.Response) -> GetCheckpoints.Response:
        """
        Send each layer's newest checkpoint file, if newer than the caller's.

        Whole, or at most `max_bytes` of each from `offset`; with `node_name`, only the
        next piece of that layer's file named by `etag` (core/run/file_pieces.py).
        """
        held = dict(zip(request.node_names, request.batches_seen))
        response.success = True
        for node in self._layers_of(request.model):
            name = node.get_fully_qualified_name()
            if request.node_name and name != request.node_name:
                continue
            checkpoint = node.last_checkpoint()
            if checkpoint is None or (not request.node_name
                                      and checkpoint[0] <= held.get(name, -1)):
                continue
            batches, path = checkpoint
            try:
                # Written atomically: the old file or the new one, never half of one.
                piece = read_piece(path, request.offset if request.node_name else 0,
                                   request.max_bytes, request.etag)
            except FileChanged:
                response.success = False
                response.message += f'{name}: changed; '
                continue
            except (OSError, ValueError) as exc:
                response.success = False
                response.message += f'{name}: {exc}; '
                continue
            response.checkpoints.append(LayerCheckpoint(
                node_name=name, layer_index=node.get_parameter('layer_index').value,
                batches_seen=batches, data=piece.data, offset=piece.offset,
                total_bytes=piece.total_bytes, etag=piece.etag))
        return response

    def _remove_finalized(self) -> None:
        """
        Remove layers finalized at least FINALIZED_LINGER_S ago.

        Not at once: destroying a node deletes its DDS writers, and what they had not yet
        delivered is lost with them (CI lost the shutdown's change_state response, and the
        layer's last 'finalized' status, when the node went 0.15 s after its shutdown).
        """
        now = time.monotonic()
        for node in self._layers_of(''):
            name = node.get_fully_qualified_name()
            if node.lifecycle_label != 'finalized':
                continue
            seen = self._finalized_at.setdefault(name, now)
            if now - seen < FINALIZED_LINGER_S:
                continue
            del self._finalized_at[name]
            self.get_logger().info(f'removing {name}: finalized (its weights were saved by '
                                   'shutdown)')
            self._remove(node, save=False)

    # ------------------------------------------------------------------ helpers
    def _layers_of(self, model: str) -> list[FFLayerNode]:
        with self._lock:
            return [n for full, n in self._layers.items()
                    if not model or full.startswith(f'/{model}/')]

    def _remove(self, node: FFLayerNode, save: bool) -> bool:
        """
        Shut the layer down (saving unless told not to) and drop it from the graph.

        The caller first claims the node (takes it off the hosted list); False when
        another path already did. A container told to stop removes its layers from the
        main thread while a client's DeleteModel can remove the same ones from the
        executor: destroying one node twice crashed the process (SIGSEGV in CI, at the
        end of the serving launch test).
        """
        with self._lock:  # by identity: the other path may have destroyed the node's handle
            name = next((full for full, hosted in self._layers.items() if hosted is node), None)
            if name is None:
                return False
            del self._layers[name]
        node.discard_weights_on_shutdown = not save
        if node.lifecycle_label != 'finalized':
            node.trigger_shutdown()  # on_shutdown saves the weights unless discarded
        self._executor.remove_node(node)
        node.destroy_node()
        # rclpy 9 keeps a destroyed lifecycle node in the graph until its state
        # machine is released as well.
        node._state_machine.destroy_when_not_in_use()
        return True

    def shutdown_layers(self) -> None:
        """Save and remove every hosted layer; later CreateLayers calls are refused."""
        with self._hosting:
            self._closing = True
            with self._lock:
                hosted = list(self._layers.items())
            for name, node in hosted:
                try:
                    self._remove(node, save=True)
                except Exception as exc:  # noqa: BLE001 - keep shutting the others down
                    self.get_logger().error(f'{name}: {exc}')


def warm_up_torch(threads: int) -> None:
    """
    Pay torch's one-time costs before the container says it is up.

    The first optimizer built in a process imports torch._dynamo (about 2-3 s here),
    which made every first configure take 3.3 s; a throwaway step now pays for it.
    """
    import torch
    torch.set_num_threads(torch_threads(threads))
    weight = torch.zeros(2, 2, requires_grad=True)
    optimizer = torch.optim.Adam([weight], lr=0.1, fused=True)  # as the layers step
    (weight.relu().square().mean()).backward()
    optimizer.step()


def read_settings() -> dict[str, Any]:
    """Read the server's parameters before its executor and name exist."""
    probe = Node('dff_server_settings', namespace=NAMESPACE, start_parameter_services=False,
                 enable_rosout=False)
    try:
        declare_all(probe, SERVER_PARAMETERS)
        settings = read_all(probe, SERVER_PARAMETERS)
    finally:
        probe.destroy_node()
    check_weight_dir(settings['weight_dir'])
    return settings


def check_weight_dir(value: str) -> None:
    """Refuse a weight_dir that is no writable folder now, not at the first save."""
    if not value.strip():
        raise ParameterError("weight_dir is empty: name the folder for the layers' weights")
    try:
        writable_folder(Path(value).expanduser(), f'weight_dir {value}')
    except ValueError as exc:
        raise ParameterError(str(exc)) from None


def restart_after_freeze(name: str, freeze: Freeze) -> NoReturn:
    """
    Start over as a new DDS participant after a freeze past the participant lease.

    The master has judged this server lost and moved its layers by now, and has dropped its
    participant: one that comes back is rediscovered from one side only, which took 18-36 s
    under load (common/freeze.py); a new one is matched at once. The hosted layers are stale
    copies (the master deletes them unsaved when a lost server returns), so they go with the
    old image; the weight files stay. Same pid, same command line, same server name.
    """
    print(f'server container {name}: {freeze.text()}, past the DDS participant lease: '
          'restarting as a new participant (the master has moved any layers it held)',
          file=sys.stderr, flush=True)
    restart_process(['-p', f'server_name:={name}'])


def main(argv: Optional[list[str]] = None) -> NoReturn:
    """Run a container until SIGINT or SIGTERM; the process ends here (bounded exit)."""
    exit_process(serve(argv))


USAGE = NodeUsage('server_container',
                  'Host FF layer nodes for a DFF master: it creates, saves and deletes managed '
                  'layer nodes on request (/dff/server_<n>/create_model, ...), and beats on '
                  '/dff/server_<n>/heartbeat.', SERVER_PARAMETERS)


def serve(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv if argv is None else argv
    code = check_node_args(argv, USAGE)
    if code is not None:
        return code
    stop = stop_event()
    try:
        with ros_process(argv, shutdown_timeout_s=5.0) as ros:
            settings = read_settings()
            warm_up_torch(settings['torch_threads'])
            executor = ros.start(threads=settings['executor_threads'])
            if settings['server_name']:
                server = ServerContainer(settings['server_name'], executor)
            else:
                with claimed_server_name(stop_event=stop) as name:
                    server = ServerContainer(name, executor)
            ros.add(server)
            watch = (FreezeWatch(functools.partial(restart_after_freeze, server.get_name()),
                                 FreezeDetector(cores=usable_cores()), stall_dump_s=STALL_DUMP_S)
                     if settings['restart_after_freeze'] else None)
            print(f'server container {server.get_fully_qualified_name()} up (pid {os.getpid()})',
                  flush=True)
            try:
                wait_for(stop)
            finally:  # before ros_process arms its shutdown bound on the same faulthandler timer
                if watch is not None:
                    watch.stop()
            server.get_logger().info('shutting down: saving and removing hosted layers')
            server.shutdown_layers()
            server.heartbeat.stop()
            ros.done(0)
    except ParameterError as exc:
        print(f'server_container: error: {exc}', file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
