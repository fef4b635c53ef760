"""
Camera images to model inputs, and dataset images to camera images (no ROS imports).

`decode_image` reads the fields of a sensor_msgs/Image (encoding, size, row step,
bytes) into a (C, H, W) float tensor of intensities in [0, 1]; `ModelInput` turns
that into what the model's first layer reads: the model's channels (luminance from
colour, colour repeated from grey), its height and width (bilinear, antialiased),
standardised like the training set, flat for MNIST-layout models. `encode_image` is
the other way, for the camera stand-in.
"""
from __future__ import annotations

from dataclasses import dataclass

from dff_lifecycle.core.data.input_stats import InputStats
import numpy as np
import torch
from torch import Tensor
import torch.nn.functional as F

# encoding -> (channels, numpy dtype, full-scale value); bgr is reversed to rgb on decode.
ENCODINGS = {
    'mono8': (1, np.dtype(np.uint8), 255.0),
    'rgb8': (3, np.dtype(np.uint8), 255.0),
    'bgr8': (3, np.dtype(np.uint8), 255.0),
    '32FC1': (1, np.dtype(np.float32), 1.0),
}
LUMINANCE = (0.299, 0.587, 0.114)  # ITU-R BT.601, as image libraries convert RGB to grey


class ImageDecodeError(ValueError):
    """An image message that cannot be read (encoding, size or data length); one line."""


def decode_image(encoding: str, height: int, width: int, step: int, data,
                 is_bigendian: bool = False) -> Tensor:
    """Return the (C, H, W) float32 intensities in [0, 1] of one image message's fields."""
    if encoding not in ENCODINGS:
        raise ImageDecodeError(f'encoding {encoding!r} is not served (known: '
                               f'{", ".join(ENCODINGS)})')
    channels, dtype, scale = ENCODINGS[encoding]
    if height <= 0 or width <= 0:
        raise ImageDecodeError(f'image size {width}x{height} is empty')
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ImageDecodeError(f'step {step} is shorter than a {encoding} row of {width} pixels '
                               f'({row_bytes} bytes)')
    buffer = memoryview(data).cast('B')
    if len(buffer) < step * height:
        raise ImageDecodeError(f'{len(buffer)} bytes of data for {height} rows of {step} bytes')
    rows = np.frombuffer(buffer, np.uint8, count=step * height).reshape(height, step)
    wire = dtype.newbyteorder('>') if is_bigendian and dtype.itemsize > 1 else dtype
    pixels = rows[:, :row_bytes].copy().view(wire)
    image = torch.from_numpy(pixels.reshape(height, width, channels).astype(np.float32))
    if scale != 1.0:
        image = image / scale
    if encoding == 'bgr8':
        image = image.flip(-1)
    return image.permute(2, 0, 1).contiguous()


def encode_image(image_chw: Tensor) -> tuple[str, int, int, int, bytes]:
    """Return (encoding, height, width, step, bytes) of a (C, H, W) image in [0, 1]."""
    channels, height, width = image_chw.shape
    if channels not in (1, 3):
        raise ImageDecodeError(f'only 1 or 3 channels can be encoded, got {channels}')
    pixels = (image_chw.clamp(0, 1) * 255.0).round().to(torch.uint8)
    data = pixels.permute(1, 2, 0).contiguous().numpy().tobytes()
    return ('mono8' if channels == 1 else 'rgb8'), height, width, width * channels, data


@dataclass(frozen=True)
class ModelInput:
    """What the model's first layer reads, made from decoded camera images."""

    image_shape: tuple[int, int, int]  # the model's (C, H, W)
    stats: InputStats
    flat: bool  # MNIST-layout models read (N, C*H*W)

    def __post_init__(self) -> None:
        if len(self.stats.mean) != self.image_shape[0]:
            raise ValueError(f'input statistics hold {len(self.stats.mean)} channel(s), the '
                             f'model reads {self.image_shape[0]}')

    def __call__(self, images: list[Tensor]) -> Tensor:
        """Return a batch of model inputs from (C, H, W) images of any size, 1 or 3 channels."""
        return torch.cat([self._one(image) for image in images])

    def _one(self, image: Tensor) -> Tensor:
        channels, height, width = self.image_shape
        if image.shape[0] != channels:
            if channels == 1:
                weights = torch.tensor(LUMINANCE, dtype=image.dtype).view(3, 1, 1)
                image = (image * weights).sum(0, keepdim=True)
            else:
                image = image.expand(channels, -1, -1)
        if tuple(image.shape[1:]) != (height, width):
            image = F.interpolate(image[None], size=(height, width), mode='bilinear',
                                  align_corners=False, antialias=True)[0]
        mean = torch.tensor(self.stats.mean, dtype=torch.float32).view(-1, 1, 1)
        std = torch.tensor(self.stats.std, dtype=torch.float32).view(-1, 1, 1)
        x = ((image - mean) / std)[None]
        return x.reshape(1, -1) if self.flat else x
