"""Master coordinator: plans, deploys, trains, evaluates and tears down a model.

It reads the layer and model configs (validated before anything is created),
discovers the server containers, asks them to create the layer nodes, drives
their lifecycle like a lifecycle manager, streams positive / negative batches
into the first layer with a window of batches in flight (so layers on
different processes work on different batches at once), and gathers goodness
or features for evaluation.
"""
from __future__ import annotations

import itertools
import json
import secrets
import signal
import sys
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np
import rclpy
import torch
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.signals import SignalHandlerOptions
from tqdm import tqdm

from dff_lifecycle.core.batches import TrainBatch, count_batches, inference_inputs, training_epochs
from dff_lifecycle.core.config import ConfigError, ModelConfig, load_layer_config, load_model_config
from dff_lifecycle.core.data import DataNotFoundError, Dataset, load_dataset
from dff_lifecycle.core.experiment import TRAIN_ACCURACY_SAMPLES
from dff_lifecycle.core.head import head_predict, train_head
from dff_lifecycle.core.plots import plot_training
from dff_lifecycle.core.scoring import accuracy, label_scores, predict_labels
from dff_lifecycle.deployment import resolve_config_path
from dff_lifecycle.lifecycle_client import LifecycleClient
from dff_lifecycle.lifecycle_manager import BringUpError, LifecycleManager
from dff_lifecycle.node_parameters import Param, declare_all, read_all
from dff_lifecycle.pipeline_watch import PipelineWatch
from dff_lifecycle.plan import DistributionPlan, build_plan, model_topics, parse_pins
from dff_lifecycle.ros_calls import ClientCache, ServiceCallError, call
from dff_lifecycle.server_naming import SERVER_NAMESPACE, server_indices
from dff_lifecycle.transport import (DEFAULT_CHUNK_ELEMENTS, STATUS_QOS, TENSOR_QOS, TensorReceiver, TensorSender,
                                     configure_environment, to_numpy)
from dff_msgs.msg import LayerSpec, LayerStatus, TensorChunk
from dff_msgs.srv import CreateLayers, DeleteModel, SaveModel

GRAPH_CHECK_PERIOD_S = 2.0  # how often streaming checks that every layer node still exists
COMMANDS = ('run', 'train', 'evaluate', 'plan', 'save', 'delete')

MASTER_PARAMETERS = {
    'command': Param(str, 'run', 'run (train + evaluate) | train | evaluate | plan | save | delete'),
    'model_config': Param(str, None, 'Model configuration YAML (YOLOv5-style rows).'),
    'layer_config': Param(str, None, 'Layer configuration YAML (ports and message types).'),
    'data_root': Param(str, '', 'Dataset root; empty: $DFF_DATA_ROOT, else ./data.'),
    'servers': Param(int, 1, 'Number of server containers to wait for.', 1),
    'placement': Param(str, 'contiguous', 'contiguous | round_robin | pinned'),
    'pins': Param(list, [''], 'Pinned layers as "<layer>:<server>", e.g. "0:server_2".'),
    'window': Param(int, 16, 'Batches in flight in the pipeline.', 1),
    'epochs': Param(int, 0, 'Override training.epochs (0: keep the config).', 0),
    'load_weights': Param(bool, True, 'Layers reload saved weights in configure (false: '
                                      'start from the seeded initialisation).'),
    'save_every_batches': Param(int, 100, 'Layers also save their weights every N training '
                                          'batches (0: only on cleanup / shutdown / save).', 0),
    'chunk_elements': Param(int, DEFAULT_CHUNK_ELEMENTS, 'Float32 values per chunk '
                                                               'message (1 MiB).', 1),
    'service_timeout_s': Param(float, 30.0, 'Timeout of each service call.', 0.1),
    'discovery_timeout_s': Param(float, 60.0, 'How long to wait for servers and topics.', 0.1),
    'batch_timeout_s': Param(float, 20.0, 'No progress for this long: resend or report.', 0.1),
    'pause_timeout_s': Param(float, 600.0, 'How long to wait for a paused layer.', 0.0),
    'max_resends': Param(int, 3, 'Resends of stalled batches before giving up.', 0),
    'teardown': Param(bool, True, 'Deactivate, clean up and delete the layers at the end.'),
    'out_dir': Param(str, '', 'Where metrics.json and training.png go; empty: none.'),
    'device': Param(str, 'cpu', 'Torch device of the classifier head.'),
    'progress': Param(bool, True, 'Show progress bars.'),
}


class PipelineError(RuntimeError):
    """The pipeline stalled or a layer failed beyond recovery."""


class MasterCoordinator(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__('master', namespace=SERVER_NAMESPACE, **kwargs)
        declare_all(self, MASTER_PARAMETERS)
        self.settings = read_all(self, MASTER_PARAMETERS)
        self.clients_ = ClientCache(self)
        self.lifecycle = LifecycleClient(self.clients_, self.settings['service_timeout_s'])
        self.run_id = secrets.token_hex(3)
        self.model: Optional[ModelConfig] = None
        self.plan: Optional[DistributionPlan] = None
        self.watch: Optional[PipelineWatch] = None
        self._senders: dict[str, TensorSender] = {}
        self._io: list = []

    def log(self, text: str) -> None:
        with tqdm.external_write_mode():
            print(text, flush=True)

    # ------------------------------------------------------------- configuration
    def load_configs(self) -> ModelConfig:
        s = self.settings
        # Relative paths: from the current folder, else from the package (repo or share).
        model = load_model_config(resolve_config_path(s['model_config']),
                                  load_layer_config(resolve_config_path(s['layer_config'])))
        if s['epochs']:
            from dataclasses import replace
            model = replace(model, training=replace(model.training, epochs=s['epochs']))
        if s['command'] not in COMMANDS:
            raise ConfigError('parameters', 'command',
                              f'unknown command {s["command"]!r} (known: {", ".join(COMMANDS)})')
        self.model = model
        return model

    def discover_servers(self) -> list[str]:
        """Wait until the expected number of servers offer create_layers."""
        wanted, deadline = self.settings['servers'], time.monotonic() + self.settings['discovery_timeout_s']
        while True:
            seen = self.get_node_names_and_namespaces()
            names = [f'server_{i}' for i in server_indices(seen)]
            ready = [n for n in names if self.count_services_named(
                f'{SERVER_NAMESPACE}/{n}/create_layers')]
            if len(ready) >= wanted:
                return ready
            if time.monotonic() > deadline:
                raise PipelineError(f'found {len(ready)} server container(s) {ready}, expected '
                                    f'{wanted}; start them with `server_container`')
            time.sleep(0.2)

    def count_services_named(self, name: str) -> int:
        return sum(1 for n, _ in self.get_service_names_and_types() if n == name)

    def make_plan(self, servers: list[str]) -> DistributionPlan:
        pins = parse_pins([p for p in self.settings['pins'] if p])
        self.plan = build_plan(self.model, servers, self.settings['placement'], pins,
                               {'chunk_elements': self.settings['chunk_elements'],
                                'save_every_batches': self.settings['save_every_batches'],
                                'load_weights': self.settings['load_weights']})
        return self.plan

    # ---------------------------------------------------------------- deployment
    def _server_call(self, server: str, srv_type, service: str, request):
        client = self.clients_.get(srv_type, f'{SERVER_NAMESPACE}/{server}/{service}')
        return call(client, request, self.settings['service_timeout_s'])

    def deploy(self, servers: list[str]) -> LifecycleManager:
        plan = self.plan
        self.delete_model(servers, quiet=True)  # stale layers of a crashed earlier run
        created: list[str] = []
        for server, placements in plan.by_server().items():
            request = CreateLayers.Request(layers=[
                LayerSpec(model=plan.model, layer_index=p.layer.index, layer_type=p.layer.module,
                          node_name=p.node_name,
                          parameters=[Parameter(k, value=v).to_parameter_msg()
                                      for k, v in p.parameters.items()])
                for p in placements])
            response = self._server_call(server, CreateLayers, 'create_layers', request)
            if not response.success:
                self.delete_model(servers, quiet=True)
                raise PipelineError(f'{server} could not create layers: {response.message}')
            created += response.node_names
            self.log(f'{server}: created {", ".join(response.node_names)}')
        self._open_io()
        manager = LifecycleManager(self.lifecycle, [p.full_name for p in plan.placements],
                                   log=self.log)
        try:
            manager.startup()
            self._wait_for_pipeline()
        except Exception:
            self.log('bring-up failed: tearing down what was created')
            manager.shutdown()
            self._close_io()
            self.delete_model(servers, quiet=True)
            raise
        return manager

    def _open_io(self) -> None:
        plan = self.plan
        self.watch = PipelineWatch({p.full_name: p.layer.index for p in plan.placements})
        train_in, infer_in, result = model_topics(plan.model)
        source = self.get_fully_qualified_name()
        for name, topic in (('train', train_in), ('infer', infer_in)):
            pub = self.create_publisher(TensorChunk, topic, TENSOR_QOS)
            self._io.append(pub)
            self._senders[name] = TensorSender(pub, source=source,
                                               chunk_elements=self.settings['chunk_elements'])
        receiver = TensorReceiver(self.get_logger())

        def on_result(msg: TensorChunk) -> None:
            tensor = receiver.on_message(msg)
            if tensor is not None:
                self.watch.on_result(tensor.source, tensor.stream, tensor.batch_seq, tensor.array)

        self._io.append(self.create_subscription(TensorChunk, result, on_result, TENSOR_QOS))
        for p in plan.placements:
            self._io.append(self.create_subscription(LayerStatus, p.topics.status,
                                                     self.watch.on_status, STATUS_QOS))

    def _close_io(self) -> None:
        for entity in self._io:
            if hasattr(entity, 'publish'):
                self.destroy_publisher(entity)
            else:
                self.destroy_subscription(entity)
        self._io, self._senders = [], {}

    def _wait_for_pipeline(self) -> None:
        """Every topic of the pipeline has its reader, so no first batch is lost."""
        plan = self.plan
        links = [(p.topics.train_in, 1) for p in plan.placements]
        links += [(p.topics.infer_in, 1) for p in plan.placements]
        deadline = time.monotonic() + self.settings['discovery_timeout_s']
        for topic, count in links:
            # Both ends must be known: layer outputs are published by other layers.
            while self.count_subscribers(topic) < count or self.count_publishers(topic) < 1:
                if time.monotonic() > deadline:
                    raise PipelineError(f'no subscriber on {topic} after '
                                        f'{self.settings["discovery_timeout_s"]} s')
                time.sleep(0.05)
        reporters = sum(1 for p in plan.placements
                        if p.parameters['report_goodness'] or p.parameters['report_features'])
        _, _, result = model_topics(plan.model)
        while self.count_publishers(result) < reporters:
            if time.monotonic() > deadline:
                raise PipelineError(f'missing result publishers on {result}')
            time.sleep(0.05)

    def present_nodes(self) -> set[str]:
        return {f'{ns.rstrip("/")}/{n}' for n, ns in self.get_node_names_and_namespaces()}

    def teardown(self, manager: LifecycleManager, servers: list[str]) -> None:
        # Skip what left the graph (a dead server) instead of waiting for its timeouts.
        present = self.present_nodes()
        problems = manager.shutdown(skip={n for n in manager.nodes if n not in present})
        self._close_io()
        self.delete_model([s for s in servers if f'{SERVER_NAMESPACE}/{s}' in present])
        if problems:
            self.log('teardown problems: ' + '; '.join(problems))

    def delete_model(self, servers: list[str], quiet: bool = False) -> None:
        """Remove the model's layers (weights saved) from every server that answers."""
        for server in servers:
            try:
                response = self._server_call(server, DeleteModel, 'delete_model',
                                             DeleteModel.Request(model=self.model.name,
                                                                 save_weights=True))
            except ServiceCallError as exc:
                self.log(f'{server}: could not delete {self.model.name}: {exc}')
                continue
            if response.removed_nodes and not quiet:
                self.log(f'{server}: removed {", ".join(response.removed_nodes)}')
            if response.removed_nodes and quiet:
                self.log(f'{server}: removed stale {", ".join(response.removed_nodes)}')

    def save_model(self, servers: list[str]) -> list[str]:
        files = []
        for server in servers:
            response = self._server_call(server, SaveModel, 'save_model',
                                         SaveModel.Request(model=self.model.name))
            if not response.success:
                raise PipelineError(f'{server} could not save: {response.message}')
            files += response.files
        return files

    # ------------------------------------------------------------------ training
    def train(self, dataset: Dataset) -> tuple[list[dict], float]:
        model, plan = self.model, self.plan
        stream = f'train_{self.run_id}'
        leaves = [p.layer.index for p in plan.placements if not p.topics.train_out]
        generator = torch.Generator().manual_seed(model.training.seed)
        epochs_of: dict[int, int] = {}
        full_batch = model.training.mode == 'full_batch'
        total = count_batches(dataset, model)
        started = time.perf_counter()
        with self._progress(total, f'train {model.name} (DFF)') as bar:
            def on_done(batch: TrainBatch) -> None:
                bar.update(1)

            def send(batch: TrainBatch) -> None:
                epochs_of[batch.seq] = batch.epoch
                for kind, x in ((TensorChunk.KIND_POSITIVE, batch.x_pos),
                                (TensorChunk.KIND_NEGATIVE, batch.x_neg)):
                    self._senders['train'].send(to_numpy(x), model=model.name, stream=stream,
                                                batch_seq=batch.seq, kind=kind)

            def scorer(x: torch.Tensor) -> torch.Tensor:  # hard negatives: the model so far
                epoch = next(scoring_round) + 1
                self.log(f'epoch {epoch}: scoring {len(x)} training images for hard negatives')
                return self.label_scores_of(x, f'negatives_{epoch}')

            scoring_round = itertools.count(1)
            epochs = training_epochs(dataset, model, generator, scorer)
            # With hard negatives, epoch by epoch: _stream returns once every batch is trained,
            # so the scorer opening the next epoch sees the model a single process would.
            # Otherwise one stream, so the pipeline never drains between epochs.
            runs = epochs if model.training.negatives == 'hard' else [itertools.chain.from_iterable(epochs)]
            for batches in runs:
                self._stream(batches, send, lambda: self.watch.completed_through(stream, leaves),
                             on_done, what='training')
        seconds = time.perf_counter() - started
        return self._history(stream, epochs_of, full_batch), seconds

    def _stream(self, items: Iterator, send: Callable, done_through: Callable[[], int],
                on_done: Callable, what: str) -> None:
        """Keep `window` items in flight; recover from paused layers and lost batches."""
        window = self.settings['window'] if self.model.training.mode != 'full_batch' else 1
        inflight: OrderedDict[int, object] = OrderedDict()
        items = iter(items)
        exhausted, resends = False, 0
        last_progress = last_graph_check = time.monotonic()
        while True:
            while not exhausted and len(inflight) < window:
                item = next(items, None)
                if item is None:
                    exhausted = True
                    break
                send(item)
                inflight[item.seq] = item
            if exhausted and not inflight:
                return
            with self.watch.changed:
                self.watch.changed.wait(0.2)
            if time.monotonic() - last_graph_check > GRAPH_CHECK_PERIOD_S:
                self._check_layers_present(what)
                last_graph_check = time.monotonic()
            done = done_through()
            finished = [seq for seq in inflight if seq <= done]
            for seq in finished:
                on_done(inflight.pop(seq))
            if finished:
                last_progress, resends = time.monotonic(), 0
                continue
            paused = self.watch.not_active()
            stalled = time.monotonic() - last_progress > self._stall_limit()
            if paused or stalled:
                resends = self._recover(paused, resends, what, len(inflight))
                for item in inflight.values():
                    send(item)
                last_progress = time.monotonic()

    def _check_layers_present(self, what: str) -> None:
        """A layer that left the graph means its server died: stop instead of waiting."""
        present = self.present_nodes()
        gone = [p for p in self.plan.placements if p.full_name not in present]
        if gone:
            listing = ', '.join(f'{p.full_name} (on {p.server})' for p in gone)
            raise PipelineError(
                f'{what} stopped: {listing} left the ROS graph (server container gone?). The '
                'other layers save their weights at teardown; layers save to their server\'s '
                'weight_dir on cleanup, shutdown and every save_every_batches batches, so '
                'deploying again resumes from the last save.')

    def _stall_limit(self) -> float:
        limit = self.settings['batch_timeout_s']
        if self.model.training.mode == 'full_batch':  # one batch of N steps per layer
            limit *= max(1, self.model.training.steps_per_layer // 10)
        return limit

    def _recover(self, paused: dict[int, str], resends: int, what: str, inflight: int) -> int:
        names = {p.layer.index: p.full_name for p in self.plan.placements}
        if paused:
            listing = ', '.join(f'{names[i]} is {s}' for i, s in sorted(paused.items()))
            self.log(f'{what} paused: {listing}; waiting for every layer to be active '
                     f'(e.g. `dff_lifecycle set {names[min(paused)]} activate`)')
            deadline = time.monotonic() + self.settings['pause_timeout_s']
            while self.watch.not_active():
                if any(s in ('unconfigured', 'finalized') for s in self.watch.not_active().values()):
                    raise PipelineError(f'{what} stopped: {self._describe_not_active(names)} '
                                        '(configure it again to resume)')
                if time.monotonic() > deadline:
                    raise PipelineError(f'{what} stopped: {self._describe_not_active(names)} for '
                                        f'{self.settings["pause_timeout_s"]} s')
                with self.watch.changed:
                    self.watch.changed.wait(0.5)
            self.log(f'every layer is active again: resending {inflight} {what} batch(es)')
            return 0
        if resends >= self.settings['max_resends']:
            errors = {names[i]: v.error for i, v in self.watch.layers.items() if v.error}
            raise PipelineError(f'{what} made no progress for {self._stall_limit():.0f} s after '
                                f'{resends} resends; layer errors: {errors or "none"}')
        self.log(f'{what}: no progress for {self._stall_limit():.0f} s; resending {inflight} '
                 'batch(es)')
        return resends + 1

    def _describe_not_active(self, names: dict[int, str]) -> str:
        return ', '.join(f'{names[i]} is {s}' for i, s in sorted(self.watch.not_active().items()))

    def _history(self, stream: str, epochs_of: dict[int, int], full_batch: bool) -> list[dict]:
        """Per-epoch means of each layer's reported loss and goodness."""
        history = []
        axis = 'step' if full_batch else 'epoch'
        for index, view in sorted(self.watch.layers.items()):
            by_epoch: dict[int, list] = {}
            for (s, seq), values in view.scalars.items():
                if s == stream:
                    by_epoch.setdefault(epochs_of.get(seq, 0), []).append(values)
            for epoch, values in sorted(by_epoch.items()):
                mean = np.mean(np.asarray(values, dtype=np.float64), axis=0)
                at = self.model.training.steps_per_layer if full_batch else epoch + 1
                history.append({'layer': index, axis: at, 'loss': float(mean[0]),
                                'goodness_pos': float(mean[1]), 'goodness_neg': float(mean[2])})
        return history

    def _progress(self, total: int, desc: str) -> tqdm:
        # Redrawn in place on a terminal; through a pipe (launchers, logs) a line every 10 s.
        interactive = sys.stderr.isatty()
        return tqdm(total=total, unit='batch', desc=desc, disable=not self.settings['progress'],
                    mininterval=0.1 if interactive else 10.0)

    # ---------------------------------------------------------------- inference
    def infer(self, x: torch.Tensor, tag: str) -> dict[int, torch.Tensor]:
        """Run x through the inference pipeline; per reporting layer, its results in order."""
        model, plan = self.model, self.plan
        wanted = {p.layer.index for p in plan.placements
                  if p.parameters['report_goodness'] or p.parameters['report_features']}
        stream = f'infer_{tag}_{self.run_id}'
        batch = model.training.eval_batch_size
        starts = list(range(0, len(x), batch))
        collected: dict[int, dict[int, np.ndarray]] = {}

        class Item:
            def __init__(self, seq: int) -> None:
                self.seq = seq

        def send(item: Item) -> None:
            start = starts[item.seq]
            inputs = inference_inputs(x[start:start + batch], model)
            self._senders['infer'].send(to_numpy(inputs), model=model.name, stream=stream,
                                        batch_seq=item.seq, kind=TensorChunk.KIND_INFERENCE)

        def done_through() -> int:
            for seq in sorted(set(range(len(starts))) - set(collected)):
                got = self.watch.take_result(stream, seq, wanted)
                if got is not None:
                    collected[seq] = got
            return next((seq - 1 for seq in range(len(starts)) if seq not in collected),
                        len(starts) - 1)

        with self._progress(len(starts), f'infer {tag}') as bar:
            self._stream((Item(i) for i in range(len(starts))), send, done_through,
                         lambda _item: bar.update(1), what=f'inference ({tag})')
        return {i: torch.from_numpy(np.concatenate([collected[s][i] for s in range(len(starts))]))
                for i in wanted}

    def label_scores_of(self, x: torch.Tensor, tag: str) -> torch.Tensor:
        """(N, C) goodness of every label's overlay, summed over the model's goodness layers."""
        goodness = self.infer(x, tag)
        return label_scores([goodness[i] for i in self.model.goodness_layers],
                            self.model.num_classes)

    def evaluate(self, dataset: Dataset) -> dict:
        model = self.model
        t = model.training
        n_train = min(len(dataset.x_train[:t.train_limit]), TRAIN_ACCURACY_SAMPLES)
        if model.supervised:
            def predict(x: torch.Tensor, tag: str) -> torch.Tensor:
                return predict_labels(self.label_scores_of(x, tag))
            test = accuracy(predict(dataset.x_test[:t.test_limit], 'test'),
                            dataset.y_test[:t.test_limit])
            train = accuracy(predict(dataset.x_train[:n_train], 'train'),
                             dataset.y_train[:n_train])
        else:
            def features(x: torch.Tensor, tag: str) -> torch.Tensor:
                parts = self.infer(x, tag)
                return torch.cat([parts[i] for i in model.feature_layers], dim=1)
            x_train, y_train = dataset.x_train[:t.train_limit], dataset.y_train[:t.train_limit]
            f_train = features(x_train, 'train')
            generator = torch.Generator().manual_seed(t.seed)
            head = train_head(f_train, y_train, model.num_classes, model.head, generator,
                              self.settings['device'])
            f_test = features(dataset.x_test[:t.test_limit], 'test')
            test = accuracy(head_predict(head, f_test, model.head.batch_size),
                            dataset.y_test[:t.test_limit])
            train = accuracy(head_predict(head, f_train[:n_train], model.head.batch_size),
                             y_train[:n_train])
        return {'test_accuracy': test, 'train_accuracy': train, 'train_accuracy_samples': n_train}

    # ------------------------------------------------------------------ commands
    def execute(self) -> int:
        s = self.settings
        model = self.load_configs()
        command = s['command']
        dataset = None
        if command in ('run', 'train', 'evaluate'):
            t = model.training
            dataset = load_dataset(model.dataset, s['data_root'] or None,
                                   train_limit=t.train_limit, test_limit=t.test_limit)
        servers = self.discover_servers()
        self.log(f'servers: {", ".join(servers)}')
        if command == 'delete':
            self.delete_model(servers)
            return 0
        if command == 'save':
            for f in self.save_model(servers):
                self.log(f'saved {f}')
            return 0
        plan = self.make_plan(servers)
        self.log(f'distribution plan for {model.name} ({s["placement"]}):\n{plan.table()}')
        if command == 'plan':
            return 0
        manager = self.deploy(servers)
        metrics: dict = {'model': model.name, 'dataset': model.dataset, 'system': 'DFF',
                         'servers': servers, 'placement': s['placement'],
                         'plan': [{'layer': p.layer.index, 'server': p.server,
                                   'node': p.full_name} for p in plan.placements]}
        try:
            if command in ('run', 'train'):
                history, seconds = self.train(dataset)
                metrics.update(history=history, history_axis='step'
                               if model.training.mode == 'full_batch' else 'epoch',
                               train_seconds=seconds)
                self.log(f'training done in {seconds:.1f} s')
                for f in self.save_model(servers):
                    self.log(f'saved {f}')
            if command in ('run', 'evaluate'):
                started = time.perf_counter()
                metrics.update(self.evaluate(dataset))
                metrics['eval_seconds'] = time.perf_counter() - started
                self.log(f'{model.name} (DFF): test accuracy {metrics["test_accuracy"]:.4f}, '
                         f'train accuracy {metrics["train_accuracy"]:.4f}')
                print(f'test accuracy: {metrics["test_accuracy"]:.4f}', flush=True)
        finally:
            if s['teardown']:
                self.teardown(manager, servers)
        if s['out_dir']:
            out = Path(s['out_dir'])
            out.mkdir(parents=True, exist_ok=True)
            (out / 'metrics.json').write_text(json.dumps(metrics, indent=2) + '\n')
            if metrics.get('history'):
                plot_training(metrics, out / 'training.png')
        return 0


def main(argv: Optional[list[str]] = None) -> int:
    configure_environment()
    rclpy.init(args=sys.argv if argv is None else argv,
               signal_handler_options=SignalHandlerOptions.NO)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    master = None
    executor = MultiThreadedExecutor(num_threads=2)
    try:
        master = MasterCoordinator()
        executor.add_node(master)
        threading.Thread(target=executor.spin, daemon=True).start()
        return master.execute()
    except (ConfigError, DataNotFoundError, PipelineError, BringUpError, ServiceCallError) as exc:
        print(f'master: error: {exc}', file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        print('master: interrupted', file=sys.stderr, flush=True)
        return 130
    finally:
        executor.shutdown(timeout_sec=2.0)
        if master is not None:
            master.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


if __name__ == '__main__':
    sys.exit(main())
