"""What the serving tests check, shared by the pytest and launch_testing versions.

A trained model (`train_serving_model`), the offline answers for the first test
images, and a listener that pairs every image on `image` with the prediction whose
header it carries.
"""
from __future__ import annotations

from pathlib import Path
import threading

from dff_lifecycle.core.config import load_layer_config, load_model_config
from dff_lifecycle.core.data.datasets import load_dataset
from dff_lifecycle.core.run.experiment import run_single_process
from dff_lifecycle.core.run.predictor import LocalPredictor, model_weight_dir
from dff_msgs.msg import Prediction
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

REPO = Path(__file__).resolve().parents[1]
MODEL_CONFIG = REPO / 'test' / 'fixtures' / 'mnist_serve.yaml'
LAYER_CONFIG = REPO / 'params' / 'layers.yaml'
IMAGES = 200   # the count: 200 MNIST test images, answered one by one
AGREEMENT = 0.99


def train_serving_model(out_dir: Path, data_root: Path) -> tuple[Path, list[int]]:
    """Train the fixture in this process; its weights folder and offline answers."""
    model = load_model_config(MODEL_CONFIG, load_layer_config(LAYER_CONFIG))
    dataset = load_dataset('mnist', data_root, train_limit=model.training.train_limit)
    run_single_process(model, dataset, 'cpu', out_dir=out_dir, progress=False,
                       log=lambda _text: None)
    folder = model_weight_dir(out_dir, model.name)
    scores = LocalPredictor(model, folder).scores(dataset.x_test[:IMAGES])
    return folder, [int(c) for c in scores.argmax(dim=1)]


class AnswerListener:
    """Stamps of the images seen on `image`, in order, and the predictions by stamp."""

    def __init__(self, node, prediction_topic: str = 'prediction') -> None:
        qos = QoSProfile(depth=IMAGES, reliability=ReliabilityPolicy.RELIABLE)
        self._cond = threading.Condition()
        self.images: list[tuple[int, int]] = []
        self.answers: dict[tuple[int, int], Prediction] = {}
        node.create_subscription(Image, 'image', self._on_image, qos)
        node.create_subscription(Prediction, prediction_topic, self._on_prediction, qos)

    @staticmethod
    def _stamp(header) -> tuple[int, int]:
        return (header.stamp.sec, header.stamp.nanosec)

    def _on_image(self, msg: Image) -> None:
        with self._cond:
            self.images.append(self._stamp(msg.header))

    def _on_prediction(self, msg: Prediction) -> None:
        with self._cond:
            self.answers[self._stamp(msg.header)] = msg
            self._cond.notify_all()

    def wait_answers(self, count: int, timeout_s: float) -> None:
        with self._cond:
            self._cond.wait_for(lambda: len(self.answers) >= count, timeout_s)

    def agreement(self, offline: list[int]) -> tuple[float, int]:
        """Share of the images answered as offline, and how many were answered at all."""
        with self._cond:
            answered = [self.answers.get(stamp) for stamp in self.images[:len(offline)]]
        same = sum(1 for answer, want in zip(answered, offline)
                   if answer is not None and answer.class_id == want)
        return same / len(offline), sum(a is not None for a in answered)
