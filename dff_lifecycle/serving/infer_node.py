"""
`dff_infer`: a trained model's predictions on a camera topic, as a lifecycle node.

    ros2 run dff_lifecycle dff_infer --ros-args -p model_config:=params/models/mnist.yaml \
        -p weights:=runs/mnist -p autostart:=true

Like the layers: configure loads (the model config, the weights or the deployed
pipeline, the input statistics), activate subscribes to `image` (sensor_msgs/Image:
mono8, rgb8, bgr8, 32FC1, any size) and publishes dff_msgs/Prediction on
`prediction` (the image's header, class id and name, every class's score),
deactivate pauses, cleanup releases. Both topics are remappable and camera-style
(best effort, keep last) unless `reliability:=reliable`.

The scoring itself is a `Scorer`: `LocalScorer` (core.predictor, weights here) or
`PipelineScorer` (serving/pipeline_scorer.py: the layer nodes on the server
containers), which answer the same for the same image.
"""
from __future__ import annotations

import sys
import threading
import time
from typing import Any, NoReturn, Optional, Protocol

from dff_lifecycle.common.cpu_limit import torch_threads
from dff_lifecycle.common.package_files import resolve_config_path
from dff_lifecycle.core.config import ConfigError, IMAGE_SHAPES, ModelConfig
from dff_lifecycle.core.data.datasets import (DataNotFoundError, dataset_class_names,
                                              load_model_data)
from dff_lifecycle.core.data.image_codec import decode_image, ImageDecodeError, ModelInput
from dff_lifecycle.core.data.input_stats import InputStats, stats_of
from dff_lifecycle.core.run.predictor import (load_stats, LocalPredictor, model_weight_dir,
                                              PredictorError)
from dff_lifecycle.master.configs import load_run_model, RunRequest
from dff_lifecycle.ros.node_args import NodeUsage
from dff_lifecycle.ros.node_main import run_lifecycle_node
from dff_lifecycle.ros.parameters import declare_all, ParameterError, read_all
from dff_lifecycle.ros.process import exit_process
from dff_lifecycle.serving.parameters import INFER_PARAMETERS, MODES
from dff_lifecycle.serving.qos import image_qos
from dff_msgs.msg import Prediction
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import Image
import torch
from torch import Tensor

NODE_NAME = 'dff_infer'
SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE
WARN_EVERY_S = 5.0  # a stream of bad images is reported this often, not per image


class Scorer(Protocol):

    def scores(self, x: Tensor) -> Tensor:
        """(N, num_classes) class scores of a batch of model inputs."""

    def close(self) -> None:
        """Release what configure took."""


class LocalScorer:
    """The weights in this process."""

    def __init__(self, predictor: LocalPredictor) -> None:
        self.predictor = predictor

    def scores(self, x: Tensor) -> Tensor:
        return self.predictor.scores(x)

    def close(self) -> None:
        pass


def camera_shape(model: ModelConfig) -> tuple[int, int, int]:
    """(C, H, W) the model's images have (a dense model's input_shape is flat)."""
    if len(model.image_shape) == 3:
        return tuple(model.image_shape)
    folder = getattr(model, 'image_folder', None)
    return folder.image_shape if folder is not None else IMAGE_SHAPES[model.dataset]


class ServingError(ValueError):
    """Configure cannot serve the model as asked; one line."""


class InferNode(LifecycleNode):
    """Answers every image with the model's prediction while active."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        declare_all(self, INFER_PARAMETERS)
        self.settings: dict[str, Any] = {}
        self.model: Optional[ModelConfig] = None
        self.scorer: Optional[Scorer] = None
        self.model_input: Optional[ModelInput] = None
        self.class_names: tuple[str, ...] = ()
        self._publisher = None
        self._subscription = None
        self._lock = threading.Lock()  # an image callback against a transition
        self.served = 0
        self.rejected = 0
        self._warned_at = -WARN_EVERY_S
        self.configure_error = ''  # why the last configure failed, one line

    # ------------------------------------------------------------------ lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.settings = read_all(self, INFER_PARAMETERS)
            self._load()
        except (ParameterError, ServingError, ConfigError, PredictorError,
                DataNotFoundError, ValueError) as exc:
            self.configure_error = str(exc)
            self.get_logger().error(f'configure failed: {exc}')
            self._release()
            return FAILURE
        self._publisher = self.create_lifecycle_publisher(Prediction, 'prediction',
                                                          image_qos(self.settings))
        self.get_logger().info(
            f'configured: {self.model.name} ({self.settings["mode"]}), '
            f'{len(self.class_names)} classes, images as {list(camera_shape(self.model))}')
        return SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._subscription = self.create_subscription(Image, 'image', self._on_image,
                                                      image_qos(self.settings))
        self.get_logger().info(f'serving: {self.resolve_topic_name("image")} -> '
                               f'{self.resolve_topic_name("prediction")}')
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._drop_subscription()
        self.get_logger().info(f'paused after {self.served} prediction(s), '
                               f'{self.rejected} image(s) rejected')
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._drop_subscription()
        self._release()
        return SUCCESS

    # ------------------------------------------------------------------ work
    def _load(self) -> None:
        s = self.settings
        if s['mode'] not in MODES:
            raise ServingError(f'mode must be one of {", ".join(MODES)}, got {s["mode"]!r}')
        if s['reliability'] not in ('best_effort', 'reliable'):
            raise ServingError('reliability must be best_effort or reliable, got '
                               f'{s["reliability"]!r}')
        torch.set_num_threads(torch_threads(s['torch_threads']))
        self.model = load_run_model(RunRequest(resolve_config_path(s['model_config']),
                                               s['layer_config']))
        folder = model_weight_dir(s['weights'], self.model.name) if s['weights'] else None
        stats = self._stats(folder)
        self.class_names = stats.class_names or dataset_class_names(self.model.dataset,
                                                                    self.model.num_classes)
        self.model_input = ModelInput(camera_shape(self.model), stats,
                                      flat=self.model.dataset == 'mnist')
        if s['mode'] == 'local':
            if folder is None:
                raise ServingError('weights is empty: local mode needs the folder of trained '
                                   'weights')
            self.scorer = LocalScorer(LocalPredictor(self.model, folder, s['device']))
        else:
            from dff_lifecycle.serving.pipeline_scorer import PipelineScorer
            self.scorer = PipelineScorer.deploy(self.model, s['servers'], self.get_name(),
                                                self.get_logger().info,
                                                s['discovery_timeout_s'])

    def _stats(self, folder) -> InputStats:
        """Read the statistics saved beside the weights, else measure them on the dataset."""
        if folder is not None and (folder / 'input_stats.json').is_file():
            return load_stats(folder)
        self.get_logger().info('no input_stats.json beside the weights: measuring the input '
                               'statistics on the training set')
        dataset = load_model_data(self.model, self.settings['data_root'] or None, progress=False)
        return stats_of(dataset)

    def _on_image(self, msg: Image) -> None:
        with self._lock:
            if self.scorer is None or self.model_input is None:
                return
            try:
                image = decode_image(msg.encoding, msg.height, msg.width, msg.step, msg.data,
                                     bool(msg.is_bigendian))
                scores = self.scorer.scores(self.model_input([image]))[0]
            except ImageDecodeError as exc:
                self._reject(str(exc))
                return
            except Exception as exc:  # noqa: BLE001 - a failed image must not end serving
                self._reject(f'{type(exc).__name__}: {exc}')
                return
            class_id = int(scores.argmax())
            answer = Prediction(header=msg.header, class_id=class_id,
                                class_name=self.class_names[class_id])
            answer.scores.frombytes(scores.float().numpy().tobytes())
            self._publisher.publish(answer)
            self.served += 1

    def _reject(self, why: str) -> None:
        self.rejected += 1
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY_S:
            self._warned_at = now
            self.get_logger().warning(f'image rejected ({self.rejected} so far): {why}')

    def _drop_subscription(self) -> None:
        if self._subscription is not None:
            self.destroy_subscription(self._subscription)
            self._subscription = None

    def _release(self) -> None:
        with self._lock:
            if self.scorer is not None:
                self.scorer.close()
            self.scorer = self.model_input = None
            if self._publisher is not None:
                self.destroy_lifecycle_publisher(self._publisher)
                self._publisher = None


def main(argv: Optional[list[str]] = None) -> NoReturn:
    exit_process(serve(argv))


def serve(argv: Optional[list[str]] = None) -> int:
    """Run the node until SIGINT or SIGTERM; with autostart, a failed configure ends it (2)."""
    usage = NodeUsage(NODE_NAME,
                      'Serve a trained DFF model: classify images from a sensor_msgs/Image topic '
                      'and publish dff_msgs/Prediction (a managed node: configure loads the '
                      'weights, activate subscribes).', INFER_PARAMETERS)
    return run_lifecycle_node(NODE_NAME, InferNode, usage, argv)


if __name__ == '__main__':
    sys.exit(main())
