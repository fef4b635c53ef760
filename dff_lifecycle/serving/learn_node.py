"""
`dff_learn`: a model that learns from a topic of labelled images, as a lifecycle node.

    ros2 run dff_lifecycle dff_learn --ros-args -p model_config:=params/models/mnist.yaml \
        -p weights:=runs/robot -p autostart:=true

Configure builds the model (from the weights in `weights` when there are some:
learning goes on where it stopped), activate subscribes to `labeled_image`
(dff_msgs/LabeledImage), and every `batch_size` images each layer takes its local FF
step (core.stream_learning, with a bounded replay of earlier images). The weights are
saved to `weights` in dff_train's layout (with input_stats.json), so `dff_infer` serves
them: every `save_every_batches` batches, and at deactivate, cleanup and shutdown,
after the pending partial batch is trained.
"""
from __future__ import annotations

from pathlib import Path
import sys
import threading
import time
from typing import Any, NoReturn, Optional

from dff_lifecycle.common.cpu_limit import torch_threads
from dff_lifecycle.common.package_files import resolve_config_path
from dff_lifecycle.core.config import ConfigError, ModelConfig
from dff_lifecycle.core.data.datasets import DataNotFoundError, load_model_data
from dff_lifecycle.core.data.image_codec import decode_image, ImageDecodeError, ModelInput
from dff_lifecycle.core.data.input_stats import InputStats, save_input_stats, stats_of, stats_path
from dff_lifecycle.core.ff.network import FFNetwork
from dff_lifecycle.core.run.experiment import save_layer_weights
from dff_lifecycle.core.run.predictor import load_stats, PredictorError
from dff_lifecycle.core.run.stream_learning import StreamLearner
from dff_lifecycle.core.run.weights import load_state, WeightFileError
from dff_lifecycle.master.configs import load_run_model, RunRequest
from dff_lifecycle.ros.node_args import NodeUsage
from dff_lifecycle.ros.node_main import run_lifecycle_node
from dff_lifecycle.ros.parameters import declare_all, ParameterError, read_all
from dff_lifecycle.ros.process import exit_process
from dff_lifecycle.serving.infer_node import camera_shape
from dff_lifecycle.serving.parameters import LEARN_PARAMETERS, RELIABILITIES
from dff_lifecycle.serving.qos import image_qos
from dff_msgs.msg import LabeledImage
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
import torch

NODE_NAME = 'dff_learn'
SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE
WARN_EVERY_S = 5.0


class LearnError(ValueError):
    """Configure cannot learn as asked; one line."""


class LearnNode(LifecycleNode):
    """Trains its model on every labelled image while active."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        declare_all(self, LEARN_PARAMETERS)
        self.settings: dict[str, Any] = {}
        self.model: Optional[ModelConfig] = None
        self.learner: Optional[StreamLearner] = None
        self.model_input: Optional[ModelInput] = None
        self.stats: Optional[InputStats] = None
        self.folder: Optional[Path] = None
        self._subscription = None
        self._lock = threading.RLock()  # an image (which may save) against a transition
        self.rejected = 0
        self._warned_at = -WARN_EVERY_S
        self._saved_batches = 0
        self.configure_error = ''

    # ------------------------------------------------------------------ lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.settings = read_all(self, LEARN_PARAMETERS)
            self._load()
        except (ParameterError, LearnError, ConfigError, PredictorError, WeightFileError,
                DataNotFoundError, ValueError) as exc:
            self.configure_error = str(exc)
            self.get_logger().error(f'configure failed: {exc}')
            self.learner = None
            return FAILURE
        return SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._subscription = self.create_subscription(LabeledImage, 'labeled_image',
                                                      self._on_image, image_qos(self.settings))
        self.get_logger().info(f'learning from {self.resolve_topic_name("labeled_image")}')
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._drop_subscription()
        self._save(final=True)
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._save(final=True)
        self.learner = None
        return SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._drop_subscription()
        self._save(final=True)
        self.learner = None
        return SUCCESS

    # ------------------------------------------------------------------ work
    def _load(self) -> None:
        s = self.settings
        if s['reliability'] not in RELIABILITIES:
            raise LearnError(f'reliability must be one of {", ".join(RELIABILITIES)}, got '
                             f'{s["reliability"]!r}')
        if not s['weights'].strip():
            raise LearnError('weights is empty: name the folder the learnt weights go to')
        torch.set_num_threads(torch_threads(s['torch_threads']))
        self.model = load_run_model(RunRequest(resolve_config_path(s['model_config']),
                                               s['layer_config']))
        self.folder = Path(s['weights']).expanduser() / 'weights' / self.model.name
        network = FFNetwork.from_model_config(self.model)
        resumed = self._resume(network)
        self.stats = self._stats()
        self.model_input = ModelInput(camera_shape(self.model), self.stats,
                                      flat=self.model.dataset == 'mnist')
        self.learner = StreamLearner(self.model, network, camera_shape(self.model),
                                     s['replay_capacity'], s['replay_per_batch'],
                                     self.model.training.seed)
        self._saved_batches = 0
        self.get_logger().info(
            f'configured: {self.model.name}, batches of {self.learner.batch_size}, replay '
            f'{s["replay_per_batch"]} of the last {s["replay_capacity"]}; '
            f'{"resuming from " + str(self.folder) if resumed else "from its initialisation"}')

    def _resume(self, network: FFNetwork) -> bool:
        """Load the weights saved in the folder, when every layer has a file there."""
        paths = [self.folder / f'layer_{stage.index}.pt' for stage in network.stages]
        if not all(path.is_file() for path in paths):
            return False
        for trainer, path in zip(network.trainers, paths):
            try:
                trainer.load_state_dict(load_state(path))
            except ValueError as exc:
                raise LearnError(f'{path}: {exc}'.replace('\n', ' ')) from None
        return True

    def _stats(self) -> InputStats:
        if stats_path(self.folder).is_file():
            return load_stats(self.folder)
        dataset = load_model_data(self.model, self.settings['data_root'] or None,
                                  progress=False)
        return stats_of(dataset)

    def _on_image(self, msg: LabeledImage) -> None:
        with self._lock:
            if self.learner is None:
                return
            image = msg.image
            try:
                x = self.model_input([decode_image(image.encoding, image.height, image.width,
                                                   image.step, image.data,
                                                   bool(image.is_bigendian))])
                trained = self.learner.add(x, int(msg.label))
            except (ImageDecodeError, ValueError) as exc:
                self._reject(str(exc))
                return
            if trained is not None:
                self._after_batch()

    def _after_batch(self) -> None:
        learner, every = self.learner, self.settings['save_every_batches']
        if learner.batches_trained % self.settings['log_every_batches'] == 0:
            losses = ' '.join(f'{r.loss:.3f}' for r in learner.last)
            self.get_logger().info(f'{learner.samples_seen} images, {learner.batches_trained} '
                                   f'batches; layer losses {losses}')
        if every and learner.batches_trained - self._saved_batches >= every:
            self._save(final=False)

    def _save(self, final: bool) -> None:
        """Save the layers (after training a pending partial batch when `final`)."""
        with self._lock:
            learner = self.learner
            if learner is None:
                return
            if final:
                learner.flush()
            if learner.batches_trained == self._saved_batches and final:
                return
            save_layer_weights(learner.network, self.model, self.folder.parent)
            save_input_stats(self.folder, self.stats)
            self._saved_batches = learner.batches_trained
            self.get_logger().info(f'saved weights to {self.folder} ({learner.batches_trained} '
                                   f'batches, {learner.samples_seen} images)')

    def _reject(self, why: str) -> None:
        self.rejected += 1
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY_S:
            self._warned_at = now
            self.get_logger().warning(f'labelled image rejected ({self.rejected} so far): {why}')

    def _drop_subscription(self) -> None:
        if self._subscription is not None:
            self.destroy_subscription(self._subscription)
            self._subscription = None


def main(argv: Optional[list[str]] = None) -> NoReturn:
    exit_process(run(argv))


def run(argv: Optional[list[str]] = None) -> int:
    """Run the node until SIGINT or SIGTERM; with autostart, a failed configure ends it (2)."""
    usage = NodeUsage(NODE_NAME,
                      'Train a Forward-Forward model from a labelled image topic, batch by batch, '
                      'and save its weights (a managed node: configure loads them, activate '
                      'subscribes).', LEARN_PARAMETERS)
    return run_lifecycle_node(NODE_NAME, LearnNode, usage, argv)


if __name__ == '__main__':
    sys.exit(main())
