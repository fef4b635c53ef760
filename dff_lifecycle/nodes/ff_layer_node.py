"""
FFLayerNode: one Forward-Forward layer as a ROS 2 managed lifecycle node.

configure  builds the layer from its parameters and reloads local weights;
activate   creates the input subscriptions and output publishers;
deactivate pauses (no processing, no updates, weights kept);
cleanup    saves the weights and releases everything configure made;
shutdown   saves whatever is configured, from any state (idempotent).
"""
from __future__ import annotations

import array
import functools
from pathlib import Path
import threading
import time
import traceback
from typing import Any, Optional

from dff_lifecycle.common.memory_limit import process_budget
from dff_lifecycle.core.ff.layers import build_row
from dff_lifecycle.core.ff.local_trainer import LocalTrainer
from dff_lifecycle.core.ff.memory import check_fits, layer_node_bytes
from dff_lifecycle.core.ff.sharding import build_shard, shard_ranges, ShardTrainer
from dff_lifecycle.core.hyperparams import FFHyperParams
from dff_lifecycle.core.run.weights import layer_weight_path, load_state, save_state_atomic
from dff_lifecycle.core.stage.layer_stage import InputRejected, LayerStage, StageSettings
from dff_lifecycle.core.stage.replica_stage import ReplicaStage
from dff_lifecycle.core.stage.shard_stage import ShardStage
from dff_lifecycle.nodes.compute_worker import ComputeWorker
from dff_lifecycle.nodes.parameters import LAYER_PARAMETERS
from dff_lifecycle.nodes.stage_wiring import StageWiring
from dff_lifecycle.ros.diagnostics import LayerDiagnostics
from dff_lifecycle.ros.parameters import declare_all, read_all
from dff_lifecycle.wire.endpoints import ReceivedTensor, TensorReceiver, TensorSender
from dff_lifecycle.wire.qos import LAYER_STATUS_QOS, TENSOR_QOS
from dff_lifecycle.wire.torch_arrays import from_numpy, to_numpy
from dff_msgs.msg import LayerStatus, TensorChunk
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.lifecycle.publisher import LifecyclePublisher
from rclpy.subscription import Subscription
import torch

SUCCESS = TransitionCallbackReturn.SUCCESS
FAILURE = TransitionCallbackReturn.FAILURE
ERROR = TransitionCallbackReturn.ERROR

__all__ = ['FFLayerNode', 'InputRejected']


COMPUTING_BEACON_S = 2.0  # a batch computing longer than this is announced this often


class FFLayerNode(LifecycleNode):
    """A Forward-Forward layer that trains on whatever reaches its input topics."""

    def __init__(self, node_name: str, *, namespace: str = '',
                 parameter_overrides: Optional[list] = None, **kwargs: Any) -> None:
        super().__init__(node_name, namespace=namespace,
                         parameter_overrides=parameter_overrides or [], **kwargs)
        declare_all(self, LAYER_PARAMETERS)
        # The lock serialises data callbacks with lifecycle transitions, which run
        # in another callback group of a multi-threaded executor.
        self._lock = threading.RLock()
        # Receiving needs only this one: the executor never waits for a training step, so
        # the container's heartbeat (a timer on the same executor) keeps beating during one.
        self._io_lock = threading.Lock()
        self._data_group = MutuallyExclusiveCallbackGroup()
        self._settings: Optional[dict[str, Any]] = None
        self._trainer: Optional[LocalTrainer] = None
        self._stage: Optional[LayerStage] = None
        self._weight_file: Optional[Path] = None
        self._weights_loaded = False
        self._checkpoint: Optional[tuple[int, Path]] = None  # (batches, file) of the last
        self._receiver: Optional[TensorReceiver] = None  # set while configured (rejections)
        self._receivers: list[TensorReceiver] = []      # one per input binding while active
        self._rejected_before = 0
        self._wiring: Optional[StageWiring] = None
        self._subscriptions_in: list[Subscription] = []
        self._train_pub: Optional[LifecyclePublisher] = None
        self._infer_pub: Optional[LifecyclePublisher] = None
        self._result_pub: Optional[LifecyclePublisher] = None
        self._partials_pub: Optional[LifecyclePublisher] = None  # a split layer's shard
        self._sync_pub: Optional[LifecyclePublisher] = None      # a replicated layer's replica
        self._senders: dict[str, TensorSender] = {}
        self._status = LayerStatus()
        self._rejected_inputs = 0
        self._fault_pending = False
        self.discard_weights_on_shutdown = False
        self._status_pub = None  # plain publisher: status is visible in every state
        # Training steps run here, off the executor (see compute_worker).
        self._worker = ComputeWorker(f'{node_name}_compute', self._work, self._fault,
                                     on_idle=self._flush_status)
        self._status_sent_at = 0.0
        self._status_due = False
        # While one batch computes for seconds (a wide layer on a starved device), say so
        # every few seconds from the executor: the master's stall rule takes it as progress.
        self.create_timer(COMPUTING_BEACON_S, self._computing_beacon)
        # /diagnostics: read from self._status at 1 Hz, told of failures and changes below.
        self._diagnostics = LayerDiagnostics(self, self._status)

    # ----------------------------------------------------------------- lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._lock:
            try:
                s = read_all(self, LAYER_PARAMETERS)
                hparams = FFHyperParams.from_mapping(s)
                if s['steps_per_batch'] < 1:
                    raise ValueError('steps_per_batch must be >= 1')
                # Refuse before allocating: on a capped device an oversized layer would
                # otherwise take the whole container down with an OOM kill.
                wiring = StageWiring.from_parameters(s)
                # The whole need is claimed now (gradients, optimiser state and activations
                # come later): a second layer of this container sees what will be left.
                need = layer_node_bytes(s['in_features'], s['out_features'], hparams.optimizer,
                                        s['train_rows'], s['infer_rows'], wiring.parameter_count,
                                        s['resend_cache_mib'], s['replica_count'])
                name = self.get_fully_qualified_name()
                process_budget().claim(name, need,
                                       lambda room: check_fits(need, f'layer {name}', room))
                self._wiring = wiring
                self._trainer, stage_class, shard_args = self._build_trainer(s, hparams, wiring)
                self._stage = stage_class(self._trainer, StageSettings(
                    in_features=s['in_features'], overlay_classes=s['overlay_classes'],
                    steps_per_batch=s['steps_per_batch'],
                    report_goodness=s['report_goodness'],
                    report_features=s['report_features'],
                    save_every_batches=s['save_every_batches'],
                    save_every_s=s['save_every_s'],
                    resend_cache_bytes=int(s['resend_cache_mib'] * 2**20)),
                    save=lambda: self.save_weights(periodic=True),
                    warn=self.get_logger().warning, ops=wiring.ops(), **shard_args)
                self._settings = s
                self._weight_file = layer_weight_path(s['weight_dir'], s['model'],
                                                      s['layer_index'],
                                                      (s['shard_index'], s['shard_count']),
                                                      s['replica_index'])
                self._weights_loaded = False
                if s['load_weights'] and self._weight_file.exists():
                    state = load_state(self._weight_file)
                    self._trainer.load_state_dict(state)
                    self._stage.restore_trained(state.get('trained', ()))
                    self._checkpoint = (self._trainer.batches_seen, self._weight_file)
                    self._weights_loaded = True
                    self.get_logger().info(f'loaded weights from {self._weight_file} '
                                           f'({self._trainer.batches_seen} batches trained)')
                else:
                    self.get_logger().info(f'no saved weights at {self._weight_file}; '
                                           'starting from the seeded initialisation')
                self._receiver = TensorReceiver(self.get_logger())
                self._rejected_before = 0
                self._status_pub = self._status_pub or self.create_publisher(
                    LayerStatus, wiring.output_topic('status'), LAYER_STATUS_QOS)
            except Exception as exc:  # noqa: BLE001 - any failure must reach the caller
                return self._fail('configure', exc, FAILURE)  # releases its claim
        self._publish_status('inactive')
        return SUCCESS

    @staticmethod
    def _build_trainer(s: dict[str, Any], hparams: FFHyperParams, wiring: StageWiring
                       ) -> tuple[LocalTrainer, type, dict[str, int]]:
        """Return the trainer, its stage class, and what that stage needs beyond a LayerStage."""
        count = s['shard_count']
        if count == 1:
            layer, _ = build_row(s['layer_type'], [wiring.in_shape], list(wiring.layer_args),
                                 s['seed'])
            trainer = LocalTrainer(layer, hparams, device=s['device'])
            if s['replica_count'] > 1:
                return trainer, ReplicaStage, {
                    'replica': s['replica_index'], 'replicas': s['replica_count'],
                    'sync_every': s['sync_every'], 'stream_batches': s['stream_batches']}
            return trainer, LayerStage, {}
        if not 0 <= s['shard_index'] < count:
            raise ValueError(f'shard_index {s["shard_index"]} of shard_count {count}')
        units = s['layer_units']
        unit_range = shard_ranges(units, count)[s['shard_index']]
        width = unit_range[1] - unit_range[0]
        if wiring.layer_args[0] != width:
            raise ValueError(f'layer_args give shard {s["shard_index"]} of {count} '
                             f'{wiring.layer_args[0]} units; {units} split {count} ways give '
                             f'it {width}')
        layer = build_shard(s['layer_type'], wiring.in_shape, [units, *wiring.layer_args[1:]],
                            unit_range, s['seed'])
        trainer = ShardTrainer(layer, unit_range, units, hparams, device=s['device'])
        return trainer, ShardStage, {'shard': s['shard_index'], 'shards': count}

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._lock:
            try:
                s, wiring = self._settings, self._wiring
                self._train_pub = self._maybe_publisher(wiring.output_topic('train'))
                self._infer_pub = self._maybe_publisher(wiring.output_topic('infer'))
                report = s['report_goodness'] or s['report_features']
                self._result_pub = self._maybe_publisher(
                    wiring.output_topic('result') if report else '')
                self._partials_pub = self._maybe_publisher(wiring.output_topic('partials'))
                self._sync_pub = self._maybe_publisher(wiring.output_topic('sync'))
                self._senders = {
                    name: TensorSender(pub, source=self.get_fully_qualified_name(),
                                       chunk_elements=s['chunk_elements'], clock=self.get_clock())
                    for name, pub in (('train', self._train_pub), ('infer', self._infer_pub),
                                      ('result', self._result_pub),
                                      ('partials', self._partials_pub),
                                      ('sync', self._sync_pub)) if pub is not None}
                # One subscription, and one reassembler, per input binding: joined inputs
                # send the same (stream, seq, kind), told apart by where they arrive.
                self._receivers = [TensorReceiver(self.get_logger()) for _ in wiring.inputs]
                self._subscriptions_in = [
                    self.create_subscription(
                        TensorChunk, binding.topic,
                        functools.partial(self._on_chunk, index=i), TENSOR_QOS,
                        callback_group=self._data_group, raw=True)
                    for i, binding in enumerate(wiring.inputs)]
            except Exception as exc:  # noqa: BLE001
                return self._fail('activate', exc, ERROR)
            result = super().on_activate(state)
        self._publish_status('active')
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._lock:  # waits for a training step in progress to finish
            self._release_io()
            result = super().on_deactivate(state)
            if self._fault_pending:
                self._fault_pending = False
                return ERROR  # on_error saves the weights and releases the layer
        self._publish_status('inactive')
        return result

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._lock:
            try:
                self.save_weights()
            except Exception as exc:  # noqa: BLE001 - keep the layer so nothing is lost
                return self._fail('cleanup', exc, FAILURE)
            self._release_all()
        self._publish_status('unconfigured')
        return SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._save_and_release('shutdown', save=not self.discard_weights_on_shutdown)
        self._publish_status('finalized')
        return SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.get_logger().error(f'error processing (from "{state.label}"): '
                                'saving weights and releasing the layer')
        self._save_and_release('error processing', save=True)
        self._publish_status('unconfigured')
        return SUCCESS

    def _save_and_release(self, why: str, save: bool) -> None:
        """Best effort: a failed save is logged, and the layer is released anyway."""
        with self._lock:
            try:
                if save:
                    self.save_weights()
            except Exception as exc:  # noqa: BLE001
                self.get_logger().error(f'{why}: could not save weights: {exc}')
            self._release_all()

    # ------------------------------------------------------------------ weights
    def save_weights(self, periodic: bool = False) -> Optional[Path]:
        """
        Checkpoint atomically: weights, optimiser state and the batches trained lately.

        None when unconfigured. The trained batch ids let a layer restored from this file
        forward, without training again, a batch it had trained before the checkpoint.
        """
        with self._lock:
            if self._trainer is None or self._weight_file is None:
                return None
            state = self._trainer.state_dict()
            if self._stage is not None:
                state['trained'] = self._stage.trained_keys()
            save_state_atomic(self._weight_file, state)
            self._checkpoint = (self._trainer.batches_seen, self._weight_file)
            log = self.get_logger().debug if periodic else self.get_logger().info
            log(f'saved weights to {self._weight_file}')
            return self._weight_file

    def last_checkpoint(self) -> Optional[tuple[int, Path]]:
        """(batches trained, file) of the newest checkpoint on disk; any thread."""
        return self._checkpoint

    def learning_verdict(self) -> str:
        """Return why this layer is not learning, or '' (it separates, or it is too early)."""
        stage = self._stage
        return stage.separation.verdict() if stage is not None else ''

    @property
    def lifecycle_label(self) -> str:
        return self._state_machine.current_state[1]

    # --------------------------------------------------------------------- data
    def _on_chunk(self, msg: bytes | TensorChunk, index: int = 0) -> None:
        """Executor side: reassemble, and hand each complete tensor to the compute thread."""
        with self._io_lock:
            receivers = self._receivers
            if not receivers or self.lifecycle_label != 'active':
                return  # paused: deactivate is tearing the subscriptions down
            tensor = receivers[index].on_message(msg)
            if tensor is not None:
                self._worker.submit((tensor, self._wiring.positions[index]))
                return
            rejected = self._rejected_by_receivers()
        if rejected + self._rejected_inputs != self._status.rejected_tensors:
            with self._lock:  # rare: a malformed stream is worth waiting for the step
                self._publish_status(error='rejected a malformed tensor stream')

    def _work(self, item: tuple[ReceivedTensor, int], generation: int) -> None:
        """Compute side: one step (or inference pass), then publish what it produced."""
        tensor, position = item
        with self._lock:
            if (generation != self._worker.generation or self._stage is None
                    or self.lifecycle_label != 'active'):
                return  # queued before a pause; the master resends what it still needs
            try:
                outputs = self._stage.process(tensor.stream, tensor.batch_seq, tensor.kind,
                                              from_numpy(tensor.array, self._trainer.device),
                                              position)
            except InputRejected as exc:
                self.get_logger().error(f'rejected {tensor.stream}#{tensor.batch_seq}: {exc}')
                self._rejected_inputs += 1
                self._publish_status(error=str(exc))
                return
            # Through which seq every batch of the stream was processed: the master's
            # completion count (core/stage/seq_watermark.py). Unchanged until seq 0 is in.
            through = self._stage.through(tensor.stream)
            if not outputs and (through < 0 or (tensor.stream, through) == (
                    self._status.stream, self._status.last_batch_seq)):
                return  # half of a batch sent as two halves: nothing to say yet
            model = self._settings['model']
            for out in outputs:
                sender = self._senders.get(out.channel)
                if sender is not None:  # a shard may finish an earlier batch than it received
                    seq = tensor.batch_seq if out.seq is None else out.seq
                    sender.send(to_numpy(out.tensor), model=model, stream=tensor.stream,
                                batch_seq=seq, kind=int(out.kind))
            scalars = self._stage.scalars
            self._status.loss = scalars.loss
            self._status.goodness_positive = scalars.goodness_positive
            self._status.goodness_negative = scalars.goodness_negative
            self._status.inference_batches = scalars.inference_batches
            self._status.silent_groups = array.array(
                'H', sorted(self._stage.separation.silent_groups()))
            if through >= 0:
                self._status.stream = tensor.stream
                self._status.last_batch_seq = through
            # Progress at a bounded rate: now if the period is over, else when it is or the
            # stream pauses (the worker's idle call), so the last batch is never left unsaid.
            period = self._settings['status_period_s']
            if time.monotonic() - self._status_sent_at >= period:
                self._publish_status()
            else:
                self._status_due = True

    def _computing_beacon(self) -> None:
        started = self._worker.busy_since
        publisher = self._status_pub
        if started is None or publisher is None or \
                time.monotonic() - started < COMPUTING_BEACON_S:
            return
        # Its own message, without the lock the compute thread holds during the step.
        publisher.publish(LayerStatus(
            stamp=self.get_clock().now().to_msg(), node_name=self.get_fully_qualified_name(),
            server=self.get_parameter('server').value or '', state=self.lifecycle_label,
            computing=True))

    def _flush_status(self) -> None:
        with self._lock:
            if self._status_due:
                self._publish_status()

    def destroy_node(self) -> None:
        self._worker.close()
        super().destroy_node()

    # ------------------------------------------------------------------ helpers
    def _rejected_by_receivers(self) -> int:
        """Tensors the reassemblers refused, over this configuration's activations."""
        return self._rejected_before + sum(r.rejected_tensors for r in self._receivers)

    def _maybe_publisher(self, topic: str) -> Optional[LifecyclePublisher]:
        return self.create_lifecycle_publisher(TensorChunk, topic, TENSOR_QOS) if topic else None

    def _release_io(self) -> None:
        with self._io_lock:
            self._rejected_before += sum(r.rejected_tensors for r in self._receivers)
            self._receivers = []
        for sub in self._subscriptions_in:
            self.destroy_subscription(sub)
        self._subscriptions_in = []
        for pub in (self._train_pub, self._infer_pub, self._result_pub, self._partials_pub,
                    self._sync_pub):
            if pub is not None:
                self.destroy_lifecycle_publisher(pub)
        self._train_pub = self._infer_pub = self._result_pub = self._partials_pub = None
        self._sync_pub = None
        self._senders = {}
        self._worker.reset()  # what is queued belongs to the stream being paused
        if self._stage is not None:
            self._stage.drop_pending()

    def _release_all(self) -> None:
        self._release_io()
        process_budget().release(self.get_fully_qualified_name())
        self._trainer = None
        self._stage = None
        self._settings = None
        self._wiring = None
        with self._io_lock:
            self._receiver = None
            self._receivers = []
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _fail(self, transition: str, exc: BaseException,
              result: TransitionCallbackReturn) -> TransitionCallbackReturn:
        # rclpy turns exceptions into ERROR without logging them: log here.
        self.get_logger().error(f'{transition} failed: {exc}')
        self.get_logger().debug(traceback.format_exc())
        self._status.error = f'{transition} failed: {exc}'
        self._diagnostics.failed(self._status.error, error_processing=result == ERROR)
        if result != ERROR:
            self._release_all()
        return result

    def _fault(self, exc: BaseException) -> None:
        """Handle an unexpected failure while active: go through error processing."""
        self.get_logger().error(f'processing failed: {exc}\n{traceback.format_exc()}')
        self._status.error = f'processing failed: {exc}'
        self._diagnostics.failed(self._status.error, error_processing=True)
        self._fault_pending = True
        self.trigger_deactivate()  # on_deactivate sees the fault and reports ERROR

    def _publish_status(self, state: Optional[str] = None, error: Optional[str] = None) -> None:
        if self._status_pub is None:
            return
        msg = self._status
        msg.stamp = self.get_clock().now().to_msg()
        msg.node_name = self.get_fully_qualified_name()
        msg.server = self.get_parameter('server').value or ''
        msg.state = state or self.lifecycle_label
        if self._settings is not None:
            msg.model = self._settings['model']
            msg.layer_index = self._settings['layer_index']
        if self._trainer is not None:
            msg.batches_seen = self._trainer.batches_seen
        if self._receiver is not None:
            msg.rejected_tensors = self._rejected_by_receivers() + self._rejected_inputs
        msg.weights_loaded = self._weights_loaded
        msg.weight_file = str(self._weight_file or '')
        if error is not None:
            msg.error = error
        self._status_pub.publish(msg)
        self._status_sent_at = time.monotonic()
        self._status_due = False
        if state is not None or error is not None:  # a transition or a rejection: report now
            self._diagnostics.changed(transition_to=state)
