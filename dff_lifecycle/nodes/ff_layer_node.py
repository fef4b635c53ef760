"""
FFLayerNode: one Forward-Forward layer as a ROS 2 managed lifecycle node.

configure  builds the layer from its parameters and reloads local weights;
activate   creates the input subscriptions and output publishers;
deactivate pauses (no processing, no updates, weights kept);
cleanup    saves the weights and releases everything configure made;
shutdown   saves whatever is configured, from any state (idempotent).
"""
from __future__ import annotations

from collections import deque, OrderedDict
from pathlib import Path
import threading
import traceback
from typing import Any, Optional

from dff_lifecycle.core.ff_layers import build_layer
from dff_lifecycle.core.hyperparams import FFHyperParams
from dff_lifecycle.core.local_trainer import LocalTrainer
from dff_lifecycle.core.scoring import normalised_features
from dff_lifecycle.core.weights import layer_weight_path, load_state, save_state_atomic
from dff_lifecycle.nodes.parameters import LAYER_PARAMETERS
from dff_lifecycle.ros.parameters import declare_all, read_all
from dff_lifecycle.transport import (from_numpy, LAYER_STATUS_QOS, ReceivedTensor, TENSOR_QOS,
                                     TensorReceiver, TensorSender, to_numpy)
from dff_msgs.msg import LayerStatus, TensorChunk
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.lifecycle.publisher import LifecyclePublisher
from rclpy.subscription import Subscription
import torch

SUCCESS = TransitionCallbackReturn.SUCCESS
FAILURE = TransitionCallbackReturn.FAILURE
ERROR = TransitionCallbackReturn.ERROR

# How many unpaired positive/negative halves and trained batch ids to remember.
MAX_PENDING_HALVES = 16
TRAINED_MEMORY = 4096


class InputRejected(ValueError):
    """A well-formed tensor that this layer cannot use (wrong shape, kind, ...)."""


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
        self._data_group = MutuallyExclusiveCallbackGroup()
        self._settings: Optional[dict[str, Any]] = None
        self._trainer: Optional[LocalTrainer] = None
        self._weight_file: Optional[Path] = None
        self._weights_loaded = False
        self._receiver: Optional[TensorReceiver] = None
        self._subscriptions_in: list[Subscription] = []
        self._train_pub: Optional[LifecyclePublisher] = None
        self._infer_pub: Optional[LifecyclePublisher] = None
        self._result_pub: Optional[LifecyclePublisher] = None
        self._senders: dict[str, TensorSender] = {}
        self._pending: OrderedDict[tuple[str, int], dict[int, Any]] = OrderedDict()
        self._trained: deque[tuple[str, int]] = deque(maxlen=TRAINED_MEMORY)
        self._trained_set: set[tuple[str, int]] = set()
        self._status = LayerStatus()
        self._rejected_inputs = 0
        self._fault_pending = False
        self.discard_weights_on_shutdown = False
        self._status_pub = None  # plain publisher: status is visible in every state

    # ----------------------------------------------------------------- lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._lock:
            try:
                s = read_all(self, LAYER_PARAMETERS)
                hparams = FFHyperParams.from_mapping(s)
                if s['steps_per_batch'] < 1:
                    raise ValueError('steps_per_batch must be >= 1')
                layer, _ = build_layer(s['layer_type'], s['in_features'], [s['out_features']],
                                       s['seed'])
                self._trainer = LocalTrainer(layer, hparams, device=s['device'])
                self._settings = s
                self._weight_file = layer_weight_path(s['weight_dir'], s['model'],
                                                      s['layer_index'])
                self._weights_loaded = False
                if s['load_weights'] and self._weight_file.exists():
                    self._trainer.load_state_dict(load_state(self._weight_file))
                    self._weights_loaded = True
                    self.get_logger().info(f'loaded weights from {self._weight_file} '
                                           f'({self._trainer.batches_seen} batches trained)')
                else:
                    self.get_logger().info(f'no saved weights at {self._weight_file}; '
                                           'starting from the seeded initialisation')
                self._receiver = TensorReceiver(self.get_logger())
                self._status_pub = self._status_pub or self.create_publisher(
                    LayerStatus, s['status_topic'], LAYER_STATUS_QOS)
                self._forget_batches()
            except Exception as exc:  # noqa: BLE001 - any failure must reach the caller
                return self._fail('configure', exc, FAILURE)
        self._publish_status('inactive')
        return SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._lock:
            try:
                s = self._settings
                self._train_pub = self._maybe_publisher(s['train_out_topic'])
                self._infer_pub = self._maybe_publisher(s['infer_out_topic'])
                report = s['report_goodness'] or s['report_features']
                self._result_pub = self._maybe_publisher(s['result_topic'] if report else '')
                self._senders = {
                    name: TensorSender(pub, source=self.get_fully_qualified_name(),
                                       chunk_elements=s['chunk_elements'], clock=self.get_clock())
                    for name, pub in (('train', self._train_pub), ('infer', self._infer_pub),
                                      ('result', self._result_pub)) if pub is not None}
                self._subscriptions_in = [
                    self.create_subscription(TensorChunk, topic, self._on_chunk, TENSOR_QOS,
                                             callback_group=self._data_group)
                    for topic in (s['train_in_topic'], s['infer_in_topic'])]
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
    def save_weights(self) -> Optional[Path]:
        """Write the layer (and optimiser) state atomically; None when unconfigured."""
        with self._lock:
            if self._trainer is None or self._weight_file is None:
                return None
            save_state_atomic(self._weight_file, self._trainer.state_dict())
            self.get_logger().info(f'saved weights to {self._weight_file}')
            return self._weight_file

    @property
    def lifecycle_label(self) -> str:
        return self._state_machine.current_state[1]

    # --------------------------------------------------------------------- data
    def _on_chunk(self, msg: TensorChunk) -> None:
        with self._lock:
            if self._receiver is None or self.lifecycle_label != 'active':
                return  # paused: deactivate is tearing the subscriptions down
            tensor = self._receiver.on_message(msg)
            if tensor is None:
                if (self._receiver.rejected_tensors + self._rejected_inputs
                        != self._status.rejected_tensors):
                    self._publish_status(error='rejected a malformed tensor stream')
                return
            try:
                if tensor.kind == TensorChunk.KIND_INFERENCE:
                    self._infer(tensor)
                elif tensor.kind in (TensorChunk.KIND_POSITIVE, TensorChunk.KIND_NEGATIVE):
                    self._collect_training_half(tensor)
                else:
                    raise InputRejected(f'unexpected tensor kind {tensor.kind}')
            except InputRejected as exc:
                self.get_logger().error(f'rejected {tensor.stream}#{tensor.batch_seq}: {exc}')
                self._rejected_inputs += 1
                self._publish_status(error=str(exc))
            except Exception as exc:  # noqa: BLE001 - to error processing, not a dead process
                self._fault(exc)

    def _check_input(self, array) -> torch.Tensor:
        features = int(array[0].size) if array.ndim >= 1 and array.shape[0] else 0
        if array.ndim < 2 or features != self._settings['in_features']:
            raise InputRejected(f'shape {tuple(array.shape)} does not fit in_features='
                                f'{self._settings["in_features"]}')
        return from_numpy(array, self._trainer.device)

    def _collect_training_half(self, tensor: ReceivedTensor) -> None:
        key = (tensor.stream, tensor.batch_seq)
        halves = self._pending.setdefault(key, {})
        halves[tensor.kind] = self._check_input(tensor.array)
        while len(self._pending) > MAX_PENDING_HALVES:
            dropped, _ = self._pending.popitem(last=False)
            self.get_logger().warning(f'dropping unpaired training half {dropped}')
        if len(halves) == 2:
            del self._pending[key]
            self._train(key, halves[TensorChunk.KIND_POSITIVE], halves[TensorChunk.KIND_NEGATIVE])

    def _train(self, key: tuple[str, int], x_pos: torch.Tensor, x_neg: torch.Tensor) -> None:
        stream, seq = key
        if key in self._trained_set:
            # A resent batch (after a pause or a lost message): forward it again
            # without a second weight update so training stays exactly-once.
            h_pos, h_neg = self._trainer.infer(x_pos), self._trainer.infer(x_neg)
        else:
            result = self._trainer.step(x_pos, x_neg, steps=self._settings['steps_per_batch'])
            h_pos, h_neg = result.h_pos, result.h_neg
            self._remember_trained(key)
            self._status.loss = result.loss
            self._status.goodness_positive = result.goodness_pos
            self._status.goodness_negative = result.goodness_neg
            every = self._settings['save_every_batches']
            if every and self._trainer.batches_seen % every == 0:
                self.save_weights()
        sender = self._senders.get('train')
        if sender is not None:
            sender.send(to_numpy(h_pos), model=self._settings['model'], stream=stream,
                        batch_seq=seq, kind=TensorChunk.KIND_POSITIVE)
            sender.send(to_numpy(h_neg), model=self._settings['model'], stream=stream,
                        batch_seq=seq, kind=TensorChunk.KIND_NEGATIVE)
        self._status.stream = stream
        self._status.last_batch_seq = seq
        self._publish_status()

    def _infer(self, tensor: ReceivedTensor) -> None:
        h = self._trainer.infer(self._check_input(tensor.array))
        stream, seq = tensor.stream, tensor.batch_seq
        if 'infer' in self._senders:
            self._senders['infer'].send(to_numpy(h), model=self._settings['model'],
                                        stream=stream, batch_seq=seq,
                                        kind=TensorChunk.KIND_INFERENCE)
        if 'result' in self._senders:
            if self._settings['report_goodness']:
                self._senders['result'].send(to_numpy(self._trainer.goodness_of(h)),
                                             model=self._settings['model'], stream=stream,
                                             batch_seq=seq, kind=TensorChunk.KIND_GOODNESS)
            if self._settings['report_features']:
                self._senders['result'].send(to_numpy(normalised_features([h])),
                                             model=self._settings['model'], stream=stream,
                                             batch_seq=seq, kind=TensorChunk.KIND_FEATURES)
        self._status.inference_batches += 1
        self._status.stream = stream
        self._status.last_batch_seq = seq
        self._publish_status()

    def _remember_trained(self, key: tuple[str, int]) -> None:
        if len(self._trained) == self._trained.maxlen:
            self._trained_set.discard(self._trained[0])
        self._trained.append(key)
        self._trained_set.add(key)

    def _forget_batches(self) -> None:
        self._pending.clear()
        self._trained.clear()
        self._trained_set.clear()

    # ------------------------------------------------------------------ helpers
    def _maybe_publisher(self, topic: str) -> Optional[LifecyclePublisher]:
        return self.create_lifecycle_publisher(TensorChunk, topic, TENSOR_QOS) if topic else None

    def _release_io(self) -> None:
        for sub in self._subscriptions_in:
            self.destroy_subscription(sub)
        self._subscriptions_in = []
        for pub in (self._train_pub, self._infer_pub, self._result_pub):
            if pub is not None:
                self.destroy_lifecycle_publisher(pub)
        self._train_pub = self._infer_pub = self._result_pub = None
        self._senders = {}
        self._pending.clear()

    def _release_all(self) -> None:
        self._release_io()
        self._trainer = None
        self._settings = None
        self._receiver = None
        self._forget_batches()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _fail(self, transition: str, exc: BaseException,
              result: TransitionCallbackReturn) -> TransitionCallbackReturn:
        # rclpy turns exceptions into ERROR without logging them: log here.
        self.get_logger().error(f'{transition} failed: {exc}')
        self.get_logger().debug(traceback.format_exc())
        self._status.error = f'{transition} failed: {exc}'
        if result != ERROR:
            self._release_all()
        return result

    def _fault(self, exc: BaseException) -> None:
        """Handle an unexpected failure while active: go through error processing."""
        self.get_logger().error(f'processing failed: {exc}\n{traceback.format_exc()}')
        self._status.error = f'processing failed: {exc}'
        self._fault_pending = True
        self.trigger_deactivate()  # on_deactivate sees the fault and reports ERROR

    def _publish_status(self, state: Optional[str] = None, error: Optional[str] = None) -> None:
        if self._status_pub is None:
            return
        msg = self._status
        msg.stamp = self.get_clock().now().to_msg()
        msg.node_name = self.get_fully_qualified_name()
        msg.state = state or self.lifecycle_label
        if self._settings is not None:
            msg.model = self._settings['model']
            msg.layer_index = self._settings['layer_index']
        if self._trainer is not None:
            msg.batches_seen = self._trainer.batches_seen
        if self._receiver is not None:
            msg.rejected_tensors = self._receiver.rejected_tensors + self._rejected_inputs
        msg.weights_loaded = self._weights_loaded
        msg.weight_file = str(self._weight_file or '')
        if error is not None:
            msg.error = error
        self._status_pub.publish(msg)
