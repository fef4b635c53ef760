"""The pure parts of serving: image decoding, model inputs, input statistics, weight folders."""
from __future__ import annotations

import json

from dff_lifecycle.core.data.datasets import MNIST_MEAN, MNIST_STD
from dff_lifecycle.core.data.image_codec import decode_image, encode_image, ImageDecodeError
from dff_lifecycle.core.data.image_codec import ModelInput
from dff_lifecycle.core.data.input_stats import InputStats, InputStatsError, load_input_stats
from dff_lifecycle.core.data.input_stats import save_input_stats
from dff_lifecycle.core.run.predictor import model_weight_dir, PredictorError
import numpy as np
import pytest
import torch

MNIST = InputStats((MNIST_MEAN,), (MNIST_STD,))


def test_mono8_round_trips_and_standardises_exactly_like_the_mnist_loader():
    pixels = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
    image = decode_image('mono8', 28, 28, 28, pixels.tobytes())
    x = ModelInput((1, 28, 28), MNIST, flat=True)([image])
    loader = (torch.from_numpy(pixels.reshape(1, -1).astype(np.float32)) / 255.0
              - MNIST_MEAN) / MNIST_STD
    assert torch.equal(x, loader)
    encoding, height, width, step, data = encode_image(image)
    assert (encoding, height, width, step, data) == ('mono8', 28, 28, 28, pixels.tobytes())


def test_bgr8_is_rgb8_reversed_and_padded_rows_are_skipped():
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    padded = np.zeros((2, 12), dtype=np.uint8)  # step 12 > 9 bytes of pixels
    padded[:, :9] = rgb[..., ::-1].reshape(2, 9)
    from_bgr = decode_image('bgr8', 2, 3, 12, padded.tobytes())
    from_rgb = decode_image('rgb8', 2, 3, 9, rgb.tobytes())
    assert torch.equal(from_bgr, from_rgb) and from_rgb.shape == (3, 2, 3)


def test_32fc1_reads_floats_in_either_byte_order():
    values = np.array([[0.0, 0.25], [0.5, 1.0]], dtype=np.float32)
    little = decode_image('32FC1', 2, 2, 8, values.tobytes())
    big = decode_image('32FC1', 2, 2, 8, values.astype('>f4').tobytes(), is_bigendian=True)
    assert torch.equal(little[0], torch.from_numpy(values)) and torch.equal(big, little)


@pytest.mark.parametrize('args, says', [
    (('yuv422', 2, 2, 4, bytes(8)), 'not served'),
    (('mono8', 0, 2, 2, b''), 'empty'),
    (('rgb8', 2, 2, 4, bytes(12)), 'shorter than a rgb8 row'),
    (('mono8', 4, 4, 4, bytes(10)), '10 bytes of data for 4 rows'),
])
def test_bad_images_are_one_line_errors(args, says):
    with pytest.raises(ImageDecodeError, match=says) as err:
        decode_image(*args)
    assert '\n' not in str(err.value)


def test_colour_to_grey_and_any_size_to_the_model_size():
    colour = torch.rand(3, 56, 40)
    x = ModelInput((1, 28, 28), InputStats((0.0,), (1.0,)), flat=False)([colour, colour])
    assert x.shape == (2, 1, 28, 28)
    grey = torch.rand(1, 32, 32)
    y = ModelInput((3, 32, 32), InputStats((0.5,) * 3, (0.25,) * 3), flat=False)([grey])
    assert torch.allclose(y[0, 0], (grey[0] - 0.5) / 0.25) and torch.equal(y[0, 0], y[0, 2])


def test_statistics_must_match_the_model_channels():
    with pytest.raises(ValueError, match='1 channel'):
        ModelInput((3, 32, 32), MNIST, flat=False)


def test_input_stats_round_trip_and_bad_files_name_themselves(tmp_path):
    stats = InputStats((0.1, 0.2, 0.3), (0.5, 0.5, 0.5), ('cat', 'dog'))
    path = save_input_stats(tmp_path, stats)
    assert load_input_stats(path) == stats
    path.write_text('{"mean": [0.1]}')
    with pytest.raises(InputStatsError, match=str(path)):
        load_input_stats(path)
    path.write_text('not json')
    with pytest.raises(InputStatsError, match='not valid JSON'):
        load_input_stats(path)
    with pytest.raises(InputStatsError, match='std finite and > 0'):
        InputStats((0.0,), (0.0,))
    assert json.loads(save_input_stats(tmp_path, MNIST).read_text())['class_names'] == []


def test_weight_folders_are_found_in_every_layout_training_leaves(tmp_path):
    out = tmp_path / 'out' / 'weights' / 'm'        # dff_train --out
    server = tmp_path / 'server' / 'm'              # a server container's weight_dir
    for folder in (out, server):
        folder.mkdir(parents=True)
        (folder / 'layer_0.pt').write_bytes(b'')
    assert model_weight_dir(tmp_path / 'out', 'm') == out
    assert model_weight_dir(tmp_path / 'server', 'm') == server
    assert model_weight_dir(server, 'm') == server   # the model folder itself
    with pytest.raises(PredictorError, match='no layer_<i>.pt of model'):
        model_weight_dir(tmp_path / 'out', 'other')
    with pytest.raises(PredictorError, match='is not a folder'):
        model_weight_dir(tmp_path / 'missing', 'm')
