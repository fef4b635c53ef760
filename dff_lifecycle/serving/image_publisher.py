"""
`dff_image_publisher`: a camera stand-in that plays images onto a topic.

    ros2 run dff_lifecycle dff_image_publisher --ros-args -p source:=mnist -p rate:=30.0

It plays the MNIST or CIFAR-10 test set (from the data root) or a folder of image
files onto `image` (sensor_msgs/Image, mono8 or rgb8, remappable) at `rate` images
per second, like image_tools' cam2image, then exits (or loops). Dataset images go
out as the camera would send them: raw 8-bit pixels, so a serving node standardises
them exactly as training did.
"""
from __future__ import annotations

import os
from pathlib import Path
import sys
import threading
import time
from typing import Any, Callable, NoReturn, Optional

from dff_lifecycle.core.data.datasets import DataNotFoundError, load_dataset
from dff_lifecycle.core.data.image_codec import encode_image
from dff_lifecycle.core.data.image_folder import ImageFolderError, images_in, read_image
from dff_lifecycle.ros.node_args import check_node_args, NodeUsage
from dff_lifecycle.ros.node_main import stop_event
from dff_lifecycle.ros.parameters import declare_all, ParameterError, read_all
from dff_lifecycle.ros.process import exit_process, ros_process
from dff_lifecycle.serving.parameters import PUBLISHER_PARAMETERS, RELIABILITIES
from dff_lifecycle.serving.qos import image_qos
from dff_msgs.msg import LabeledImage
from rclpy.duration import Duration
from rclpy.node import Node
from sensor_msgs.msg import Image
import torch
from torch import Tensor

ACK_WAIT_S = 10.0  # at the end, how long reliable subscribers may take to acknowledge
NODE_NAME = 'dff_image_publisher'
DATASETS = ('mnist', 'cifar10')
SPLITS = ('test', 'train')


class SourceError(ValueError):
    """Nothing to play from the given source; one line."""


class ImageSource:
    """`count` images, each (C, H, W) in [0, 1], and their labels (-1: unknown), by index."""

    def __init__(self, count: int, get: Callable[[int], Tensor], label: Callable[[int], int],
                 what: str) -> None:
        self.count, self.get, self.label, self.what = count, get, label, what


def open_source(source: str, data_root: str, split: str = 'test') -> ImageSource:
    """Open a dataset split (un-standardised back to pixels) or an image folder."""
    if source in DATASETS:
        if split not in SPLITS:
            raise SourceError(f'split must be one of {", ".join(SPLITS)}, got {split!r}')
        data = load_dataset(source, data_root or None, progress=False)
        x, y = (data.x_test, data.y_test) if split == 'test' else (data.x_train, data.y_train)
        shape = data.image_shape
        mean = torch.tensor(data.mean).view(-1, 1, 1)
        std = torch.tensor(data.std).view(-1, 1, 1)

        def pixels(i: int) -> Tensor:
            return x[i].reshape(shape) * std + mean
        return ImageSource(len(x), pixels, lambda i: int(y[i]), f'{source} {split} set')
    folder = Path(source).expanduser()
    if not folder.is_dir():
        raise SourceError(f'source {source!r} is neither {" nor ".join(DATASETS)} nor a folder')
    files = images_in(folder)
    if not files:
        raise SourceError(f'source {folder} holds no image files')
    # Images in class folders carry their folder's index in sorted order (as image_folder).
    classes = sorted({f.parent.name for f in files if f.parent != folder})
    index = {name: i for i, name in enumerate(classes)}
    return ImageSource(len(files), lambda i: read_image(files[i]),
                       lambda i: index.get(files[i].parent.name, -1),
                       f'{len(files)} images of {folder}')


class ImagePublisher(Node):
    """Publishes one image per timer tick; `done` is set after the last one (no loop)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        declare_all(self, PUBLISHER_PARAMETERS)
        self.settings = read_all(self, PUBLISHER_PARAMETERS)
        s = self.settings
        if s['reliability'] not in RELIABILITIES:
            raise ParameterError(f'reliability must be one of {", ".join(RELIABILITIES)}, got '
                                 f'{s["reliability"]!r}')
        self.source = open_source(s['source'], s['data_root'], s['split'])
        if s['start'] >= self.source.count:
            raise ParameterError(f'start {s["start"]} is past the last of the '
                                 f'{self.source.count} images of the {self.source.what}')
        left = self.source.count - s['start']
        self.total = min(s['count'], left) if s['count'] else left
        self.sent = 0
        self.done = threading.Event()
        if s['labeled'] and self.source.label(s['start']) < 0:
            raise SourceError(f'labeled: the {self.source.what} has no classes (put the '
                              'images in one folder per class)')
        self.publisher = (self.create_publisher(LabeledImage, 'labeled_image', image_qos(s))
                          if s['labeled'] else self.create_publisher(Image, 'image',
                                                                     image_qos(s)))

    def play(self, stop: threading.Event) -> None:
        """Wait for subscribers if asked, then publish at `rate` until done or stopped."""
        s = self.settings
        while (self.publisher.get_subscription_count() < s['wait_for_subscribers']
               and not stop.wait(0.05)):
            pass
        period = 1.0 / s['rate']
        next_at = time.monotonic()
        while not stop.is_set():
            if self.sent >= self.total:
                if not s['loop']:
                    break
                self.sent = 0
            self.publisher.publish(self._message(s['start'] + self.sent))
            self.sent += 1
            next_at += period
            stop.wait(max(0.0, next_at - time.monotonic()))
        if not stop.is_set() and s['reliability'] == 'reliable':
            # The last images may still be on their way: an exit now would lose them.
            self.publisher.wait_for_all_acked(Duration(seconds=ACK_WAIT_S))
        self.done.set()

    def _message(self, index: int) -> Image | LabeledImage:
        encoding, height, width, step, data = encode_image(self.source.get(index))
        msg = Image(encoding=encoding, height=height, width=width, step=step, is_bigendian=0)
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = self.settings['frame_id']
        msg.data.frombytes(data)
        if self.settings['labeled']:
            return LabeledImage(image=msg, label=self.source.label(index))
        return msg


def main(argv: Optional[list[str]] = None) -> NoReturn:
    exit_process(run(argv))


def run(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv if argv is None else argv
    usage = NodeUsage(NODE_NAME, 'Play dataset images or an image folder onto a sensor_msgs/Image '
                      'topic, a camera stand-in for dff_infer and dff_learn.',
                      PUBLISHER_PARAMETERS)
    code = check_node_args(argv, usage)
    if code is not None:
        return code
    stop = stop_event()
    try:
        with ros_process(argv) as ros:
            node = ImagePublisher()
            ros.start(node)
            print(f'{NODE_NAME}: playing {node.total} image(s) of the {node.source.what} onto '
                  f'{node.publisher.topic_name} at {node.settings["rate"]:g} Hz '
                  f'(pid {os.getpid()})', flush=True)
            node.play(stop)
            print(f'{NODE_NAME}: published {node.sent} image(s)', flush=True)
            ros.done(0)
    except (ParameterError, SourceError, DataNotFoundError, ImageFolderError) as exc:
        print(f'{NODE_NAME}: error: {exc}', file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
